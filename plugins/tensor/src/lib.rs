//! `tensor.write`: items stacked into safetensors shards that PyTorch loads directly
//! (`safetensors.torch.load_file`), with an `index.json` of the complete shards.

pub mod index;
pub mod layout;
pub mod stage;
pub mod writer;

mindscan_sdk::plugin!(name: "tensor", stages: [stage::TensorWrite]);
