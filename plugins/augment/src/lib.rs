//! `augment`: the dataset multiplier. Each input volume or image becomes `variants` items, each
//! a draw of the composition (TorchIO's transforms, `mindscan-augment`), reproducible from its
//! recorded plan.

pub mod stage;

mindscan_sdk::plugin!(name: "augment", stages: [stage::Augment]);
