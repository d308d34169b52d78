//! `example.threshold`: a complete third-party stage plugin. Build it with
//! `cargo build --release` and load the `cdylib` with `plugins:`, `--plugin-dir` or
//! `MINDSCAN_PLUGIN_PATH`.
//!
//! Values below `level` become `replace`. Any real dtype is accepted; the output is always
//! `float32` (like nibabel's `get_fdata`), in the same memory layout as the input.

use mindscan_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Values below this level are replaced.
    pub level: f32,
    /// What they are replaced with.
    #[serde(default)]
    pub replace: f32,
}

pub struct Threshold(Params);

impl Stage for Threshold {
    type Params = Params;
    const NAME: &'static str = "example.threshold";
    const ROLE: Role = Role::Transform;
    const INPUTS: &'static [&'static str] = &[kinds::VOLUME, kinds::IMAGE];
    const OUTPUTS: &'static [&'static str] = &["same"];
    const DESCRIPTION: &'static str = "Replace values below `level` with `replace` (float32 out)";

    fn new(params: Params, _host: &Host) -> Result<Self> {
        Ok(Threshold(params))
    }

    fn process(&self, _ctx: &Context, mut item: Item, out: &mut Emitter) -> Result<()> {
        let data = item.data()?;
        let (shape, strides) = (data.shape().to_vec(), data.strides().to_vec());
        let mut values = data.to_f32_vec()?;
        for v in values.iter_mut().filter(|v| **v < self.0.level) {
            *v = self.0.replace;
        }
        item.set_tensor("data", Tensor::from_vec_strided(values, &shape, &strides));
        out.emit(item)
    }
}

export_plugin!(name: "example-threshold", stages: [Threshold]);
