//! Mindscan plugin SDK.
//!
//! A stage plugin is a `cdylib` that implements [`Stage`] for one or more types and exports them
//! with [`export_plugin!`]. It needs no `unsafe`: the [`abi`] module is the versioned C contract
//! and [`export`] holds the trampolines that cross it (catching panics on the way).
//!
//! ```ignore
//! use mindscan_sdk::prelude::*;
//!
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Params { level: f32 }
//!
//! struct Threshold { level: f32 }
//!
//! impl Stage for Threshold {
//!     type Params = Params;
//!     const NAME: &'static str = "example.threshold";
//!     const ROLE: Role = Role::Transform;
//!     const INPUTS: &'static [&'static str] = &[kinds::VOLUME];
//!     const OUTPUTS: &'static [&'static str] = &["same"];
//!     const DESCRIPTION: &'static str = "Zeroes voxels below a level";
//!     fn new(p: Params, _host: &Host) -> Result<Self> { Ok(Threshold { level: p.level }) }
//!     fn process(&self, _ctx: &Context, item: Item, out: &mut Emitter) -> Result<()> { out.emit(item) }
//! }
//!
//! export_plugin!(name: "threshold", stages: [Threshold]);
//! ```

pub mod abi;
pub mod duration;
pub mod export;
pub mod fsio;
pub mod inputs;
pub mod item;
pub mod naming;
pub mod reference;
pub mod seed;
pub mod shard;
pub mod stage;
pub mod tensor;
pub mod walk;

pub use abi::{ABI_VERSION, Outcome, Role};
pub use item::{Item, Meta, keys, kinds};
pub use stage::{Cancelled, Completion, Context, Emitter, Host, Stage};
pub use tensor::{DType, Device, Element, Tensor};

/// Re-exported so plugins derive from the same versions the SDK uses.
pub use anyhow;
pub use schemars;
pub use serde;
pub use serde_json;

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::abi::{Outcome, Role};
    pub use crate::item::{Item, Meta, keys, kinds};
    pub use crate::stage::{Context, Emitter, Host, Stage};
    pub use crate::tensor::{DType, Device, Element, Tensor};
    pub use crate::{export_plugin, plugin};
    pub use anyhow::{Context as _, Result, anyhow, bail};
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}
