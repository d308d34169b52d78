//! TorchIO's augmentation transforms as pure functions over f32 volumes, driven by
//! counter-based randomness (Philox4x32-10): a composition ([`spec`]) is drawn into a plan of
//! concrete parameters ([`draw`] → [`plan::Plan`]), and the plan is executed ([`exec`]) with
//! spatial steps fused into one resampling and point-wise steps into one pass.
//! The CPU code here defines the result; `kernels/` hold the CUDA twins ([`cuda`]).

pub mod cuda;
pub mod draw;
pub mod exec;
pub mod plan;
/// The counter-based generator is shared with diffusion: one crate, one definition.
pub use mindscan_random as rng;
pub mod spec;
pub mod volume;

pub use draw::{Geometry, draw, validate};
pub use plan::{Applied, Plan};
pub use spec::TransformSpec;
pub use volume::{Affine, Volume};
