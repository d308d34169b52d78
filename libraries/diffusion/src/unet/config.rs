//! `config.json` of a `DiffusionModelUNet`: MONAI's constructor arguments as the Python side
//! writes them, and the checks that refuse what the CPU forward pass does not implement.

use std::path::Path;

use anyhow::{Context, bail, ensure};
use serde::Deserialize;

/// The `format` tag every config.json carries.
pub const CONFIG_FORMAT: &str = "mindscan.diffusion_unet.v1";

/// One value per level, or a single value repeated (MONAI accepts both for `num_res_blocks`
/// and `num_head_channels`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PerLevel {
    /// The same value at every level.
    All(usize),
    /// One value per level.
    Each(Vec<usize>),
}

impl PerLevel {
    /// The value at `level` (for `All`, any level).
    pub fn at(&self, level: usize) -> usize {
        match self {
            PerLevel::All(v) => *v,
            PerLevel::Each(v) => v[level],
        }
    }

    fn len(&self) -> Option<usize> {
        match self {
            PerLevel::All(_) => None,
            PerLevel::Each(v) => Some(v.len()),
        }
    }
}

/// The saved arguments of `monai.networks.nets.DiffusionModelUNet` (2D) plus what the sampler
/// needs to use it. Field names and meanings are MONAI's; `Default` is the brain-ddpm-64
/// architecture (channels 32/64/64, attention at the two lower levels, one res block).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// Always `mindscan.diffusion_unet.v1`.
    pub format: String,
    /// Always `DiffusionModelUNet`.
    pub model: String,
    /// Number of spatial dimensions; only 2 is implemented.
    pub spatial_dims: usize,
    /// Channels of the network input.
    pub in_channels: usize,
    /// Channels of the network output.
    pub out_channels: usize,
    /// Output channels of each level.
    pub channels: Vec<usize>,
    /// Whether each level has self-attention blocks.
    pub attention_levels: Vec<bool>,
    /// Residual blocks per level in the down path (the up path has one more).
    pub num_res_blocks: PerLevel,
    /// Channels per attention head at each level (ignored where there is no attention).
    pub num_head_channels: PerLevel,
    /// Groups of every GroupNorm.
    pub norm_num_groups: usize,
    /// Epsilon of every GroupNorm.
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    /// Residual blocks (with 2x2 average pooling / nearest upsampling) instead of the
    /// stride-2 convolution and the upsample + convolution.
    #[serde(default)]
    pub resblock_updown: bool,
    /// Number of classes of `class_labels` (an embedding added to the time embedding), if any.
    #[serde(default)]
    pub num_class_embeds: Option<usize>,
    /// Attention blocks end in a linear layer (`attn.out_proj`).
    #[serde(default = "yes")]
    pub include_fc: bool,
    /// Attention projects q, k, v with one linear layer (`attn.qkv`).
    #[serde(default)]
    pub use_combined_linear: bool,
    /// PyTorch's fused attention kernel; the same arithmetic here.
    #[serde(default)]
    pub use_flash_attention: bool,
    /// Attention in float32 under mixed precision; not implemented (everything is float32).
    #[serde(default)]
    pub upcast_attention: bool,
    /// Cross-attention conditioning (spatial transformers); not implemented.
    #[serde(default)]
    pub with_conditioning: bool,
    /// Transformer layers of the cross-attention blocks (only meaningful with conditioning).
    #[serde(default = "one")]
    pub transformer_num_layers: usize,
    /// Context dimension of the cross-attention blocks; must be null.
    #[serde(default)]
    pub cross_attention_dim: Option<usize>,
    /// Dropout of the cross-attention blocks (training only).
    #[serde(default)]
    pub dropout_cattn: f64,
    /// Height and width the model was trained on.
    pub image_size: Vec<usize>,
    /// Intensity range of the training images, `[low, high]`.
    pub intensity_range: [f32; 2],
    /// The training scheduler's arguments, parsed by `schedule`.
    #[serde(default)]
    pub scheduler: serde_json::Value,
}

fn default_eps() -> f64 {
    1e-6
}
fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}

impl Default for UNetConfig {
    fn default() -> Self {
        UNetConfig {
            format: CONFIG_FORMAT.into(),
            model: "DiffusionModelUNet".into(),
            spatial_dims: 2,
            in_channels: 1,
            out_channels: 1,
            channels: vec![32, 64, 64],
            attention_levels: vec![false, true, true],
            num_res_blocks: PerLevel::Each(vec![1, 1, 1]),
            num_head_channels: PerLevel::Each(vec![64, 64, 64]),
            norm_num_groups: 32,
            norm_eps: 1e-6,
            resblock_updown: false,
            num_class_embeds: None,
            include_fc: true,
            use_combined_linear: false,
            use_flash_attention: false,
            upcast_attention: false,
            with_conditioning: false,
            transformer_num_layers: 1,
            cross_attention_dim: None,
            dropout_cattn: 0.0,
            image_size: vec![64, 64],
            intensity_range: [-1.0, 1.0],
            scheduler: serde_json::Value::Null,
        }
    }
}

impl UNetConfig {
    /// Reads and validates `config.json`; every error names the file.
    pub fn from_file(path: &Path) -> anyhow::Result<UNetConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the UNet config", path.display()))?;
        let config: UNetConfig = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a UNet config", path.display()))?;
        config
            .validate()
            .with_context(|| format!("{}: unsupported UNet config", path.display()))?;
        Ok(config)
    }

    /// Refuses what MONAI refuses and what this implementation does not support, naming the
    /// option.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.format == CONFIG_FORMAT,
            "format: expected {CONFIG_FORMAT:?}, found {:?}",
            self.format
        );
        ensure!(
            self.model == "DiffusionModelUNet",
            "model: expected \"DiffusionModelUNet\", found {:?}",
            self.model
        );
        ensure!(
            self.spatial_dims == 2,
            "spatial_dims: only 2 is supported, found {}",
            self.spatial_dims
        );
        ensure!(
            !self.with_conditioning,
            "with_conditioning: cross-attention conditioning is not supported"
        );
        ensure!(
            self.cross_attention_dim.is_none(),
            "cross_attention_dim: cross-attention conditioning is not supported"
        );
        ensure!(
            !self.upcast_attention,
            "upcast_attention: not supported (the forward pass is float32 throughout)"
        );
        ensure!(self.in_channels > 0, "in_channels: must be positive");
        ensure!(self.out_channels > 0, "out_channels: must be positive");
        let levels = self.channels.len();
        ensure!(levels > 0, "channels: at least one level is needed");
        ensure!(
            self.attention_levels.len() == levels,
            "attention_levels: {} entries for {levels} channels",
            self.attention_levels.len()
        );
        for (name, value) in [
            ("num_res_blocks", &self.num_res_blocks),
            ("num_head_channels", &self.num_head_channels),
        ] {
            if let Some(len) = value.len() {
                ensure!(len == levels, "{name}: {len} entries for {levels} channels");
            }
        }
        ensure!(
            self.norm_num_groups > 0,
            "norm_num_groups: must be positive"
        );
        ensure!(
            self.norm_eps.is_finite() && self.norm_eps > 0.0,
            "norm_eps: must be positive, found {}",
            self.norm_eps
        );
        for (level, &c) in self.channels.iter().enumerate() {
            ensure!(
                c > 0 && c % self.norm_num_groups == 0,
                "channels: {c} (level {level}) is not a multiple of norm_num_groups {}",
                self.norm_num_groups
            );
            let heads = self.num_head_channels.at(level);
            if self.attention_levels[level] {
                ensure!(
                    heads > 0 && c % heads == 0,
                    "num_head_channels: {c} channels at level {level} are not divisible by {heads}"
                );
            }
        }
        if let Some(classes) = self.num_class_embeds {
            ensure!(classes > 0, "num_class_embeds: must be positive");
        }
        if self.image_size.len() != 2 {
            bail!(
                "image_size: expected [height, width], found {:?}",
                self.image_size
            );
        }
        Ok(())
    }

    /// Number of levels (entries of `channels`).
    pub fn levels(&self) -> usize {
        self.channels.len()
    }

    /// Height and width must be multiples of this (one halving per level but the last).
    pub fn size_multiple(&self) -> usize {
        1 << (self.levels() - 1)
    }

    /// Channels of the time embedding (`4 * channels[0]`).
    pub fn time_embed_dim(&self) -> usize {
        4 * self.channels[0]
    }

    /// Learned parameters of the model this config describes (the length of MONAI's
    /// `parameters()`).
    pub fn parameter_count(&self) -> usize {
        super::weights::WeightStore::zeros()
            .count_for(|w| super::model::Network::load(self, w).map(drop))
            .unwrap_or(0)
    }
}
