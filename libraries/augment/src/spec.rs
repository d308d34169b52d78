//! The composition a pipeline asks for: the `transforms:` list of the `augment` stage. Field
//! names, meanings and defaults are TorchIO 1.2's (`RandomAffine(scales=0.1, degrees=10)` is
//! `affine: {scales: 0.1, degrees: 10}`); `docs/augment.md` lists every difference.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A range to draw from: `x` means `[-x, x]` (for `scales`, `[1 - x, 1 + x]`), `[a, b]` means
/// `[a, b]`.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Range {
    Symmetric(f64),
    Between([f64; 2]),
}

/// A range per spatial axis: one range for all three, or `[a1, b1, a2, b2, a3, b3]`.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Range3 {
    Symmetric(f64),
    Between([f64; 2]),
    PerAxis([f64; 6]),
}

/// A whole number or an inclusive range `[a, b]` to draw it from.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Count {
    Exactly(u32),
    Between([u32; 2]),
}

/// An axis: array axis `0 | 1 | 2`, or an anatomical name (`L`, `R`, `A`, `P`, `S`, `I`, `LR`,
/// `AP`, `SI`...) resolved through the affine to the array axis closest to it.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Axis {
    Array(u8),
    Anatomical(String),
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    #[default]
    Linear,
    Nearest,
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Centre {
    /// The centre of the volume.
    #[default]
    Image,
    /// The world origin (0, 0, 0) mm.
    Origin,
}

/// Value given to voxels that map outside the input: `minimum`, `mean` (of the border voxels),
/// `otsu` (mean of the border voxels below the Otsu threshold) or a number.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum PadValue {
    Named(PadName),
    Value(f64),
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PadName {
    Minimum,
    Mean,
    Otsu,
}

fn one() -> f64 {
    1.0
}
fn half() -> f64 {
    0.5
}

/// One entry of `transforms:`.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum TransformSpec {
    Flip(FlipSpec),
    Affine(AffineSpec),
    Elastic(ElasticSpec),
    Anisotropy(AnisotropySpec),
    Motion(MotionSpec),
    Ghosting(GhostingSpec),
    Spike(SpikeSpec),
    BiasField(BiasFieldSpec),
    Blur(BlurSpec),
    Noise(NoiseSpec),
    Gamma(GammaSpec),
    Swap(SwapSpec),
    Rescale(RescaleSpec),
    ZNormalize(ZNormSpec),
    LabelsToImage(LabelsToImageSpec),
    /// Exactly one of the transforms, chosen with the given weights.
    OneOf(OneOfSpec),
    /// `k` different transforms of the list, in list order.
    SomeOf(SomeOfSpec),
}

/// TorchIO `RandomFlip`: each listed axis is flipped with probability `flip_probability`.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlipSpec {
    /// Axes that may be flipped (default `[0]`, TorchIO's default). Prefer anatomical names.
    #[serde(default = "flip_axes")]
    pub axes: Vec<Axis>,
    #[serde(default = "half")]
    pub flip_probability: f64,
    /// Probability of applying the transform at all.
    #[serde(default = "one")]
    pub p: f64,
}
fn flip_axes() -> Vec<Axis> {
    vec![Axis::Array(0)]
}

/// TorchIO `RandomAffine`.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AffineSpec {
    /// Scale factors (1.5 makes the anatomy look 1.5 times larger). Default 0.1: U(0.9, 1.1).
    #[serde(default = "scales")]
    pub scales: Range3,
    /// Rotation in degrees about each axis. Default 10: U(-10, 10).
    #[serde(default = "degrees")]
    pub degrees: Range3,
    /// Translation in mm. Default 0.
    #[serde(default = "zero3")]
    pub translation: Range3,
    /// One scale factor for the three axes.
    #[serde(default)]
    pub isotropic: bool,
    #[serde(default)]
    pub center: Centre,
    #[serde(default = "pad_minimum")]
    pub default_pad_value: PadValue,
    #[serde(default)]
    pub image_interpolation: Interpolation,
    #[serde(default = "one")]
    pub p: f64,
}
fn scales() -> Range3 {
    Range3::Symmetric(0.1)
}
fn degrees() -> Range3 {
    Range3::Symmetric(10.0)
}
fn zero3() -> Range3 {
    Range3::Symmetric(0.0)
}
fn pad_minimum() -> PadValue {
    PadValue::Named(PadName::Minimum)
}

/// TorchIO `RandomElasticDeformation`: a cubic B-spline displacement field over a grid of
/// control points, displacements drawn in U(-max, max) mm.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ElasticSpec {
    /// Control points per axis (at least 4), one number or three. Default 7.
    #[serde(default = "control_points")]
    pub num_control_points: OneOrThree<u32>,
    /// Largest displacement in mm per axis. Default 7.5.
    #[serde(default = "max_displacement")]
    pub max_displacement: OneOrThree<f64>,
    /// 0: free; 1: the outer control points do not move; 2 (default): neither do the ones on the
    /// image border. Applied on all three axes (TorchIO locks only two: see docs/augment.md).
    #[serde(default = "two")]
    pub locked_borders: u8,
    #[serde(default)]
    pub image_interpolation: Interpolation,
    #[serde(default = "one")]
    pub p: f64,
}
fn control_points() -> OneOrThree<u32> {
    OneOrThree::One(7)
}
fn max_displacement() -> OneOrThree<f64> {
    OneOrThree::One(7.5)
}
fn two() -> u8 {
    2
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, Debug, PartialEq)]
#[serde(untagged)]
pub enum OneOrThree<T> {
    One(T),
    Three([T; 3]),
}

impl<T: Copy> OneOrThree<T> {
    pub fn get(&self) -> [T; 3] {
        match *self {
            OneOrThree::One(v) => [v; 3],
            OneOrThree::Three(v) => v,
        }
    }
}

/// TorchIO `RandomAnisotropy`: one axis down-sampled by a factor in `downsampling` (nearest),
/// then back to the original grid (linear): thick slices.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnisotropySpec {
    #[serde(default = "all_axes")]
    pub axes: Vec<Axis>,
    #[serde(default = "downsampling")]
    pub downsampling: Range,
    #[serde(default = "one")]
    pub p: f64,
}
fn all_axes() -> Vec<Axis> {
    vec![Axis::Array(0), Axis::Array(1), Axis::Array(2)]
}
fn downsampling() -> Range {
    Range::Between([1.5, 5.0])
}

/// TorchIO `RandomMotion`: k-space assembled from `num_transforms + 1` rigidly moved copies.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MotionSpec {
    #[serde(default = "ten")]
    pub degrees: Range,
    #[serde(default = "ten")]
    pub translation: Range,
    #[serde(default = "two_u32")]
    pub num_transforms: u32,
    #[serde(default)]
    pub image_interpolation: Interpolation,
    #[serde(default = "one")]
    pub p: f64,
}
fn ten() -> Range {
    Range::Symmetric(10.0)
}
fn two_u32() -> u32 {
    2
}

/// TorchIO `RandomGhosting`: every n-th k-space plane along one axis scaled, the centre kept.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GhostingSpec {
    #[serde(default = "num_ghosts")]
    pub num_ghosts: Count,
    #[serde(default = "all_axes")]
    pub axes: Vec<Axis>,
    #[serde(default = "ghost_intensity")]
    pub intensity: Range,
    /// Fraction of k-space around its centre left untouched; absent (TorchIO's default): the
    /// centre plane alone.
    #[serde(default)]
    pub restore: Option<f64>,
    #[serde(default = "one")]
    pub p: f64,
}
fn num_ghosts() -> Count {
    Count::Between([4, 10])
}
fn ghost_intensity() -> Range {
    Range::Between([0.5, 1.0])
}

/// TorchIO `RandomSpike`: bright points in k-space (stripes in the image).
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpikeSpec {
    #[serde(default = "one_spike")]
    pub num_spikes: Count,
    #[serde(default = "spike_intensity")]
    pub intensity: Range,
    #[serde(default = "one")]
    pub p: f64,
}
fn one_spike() -> Count {
    Count::Exactly(1)
}
fn spike_intensity() -> Range {
    Range::Between([1.0, 3.0])
}

/// TorchIO `RandomBiasField`: `x · exp(polynomial of degree ≤ order)` over normalised
/// coordinates, coefficients drawn from `coefficients`.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BiasFieldSpec {
    #[serde(default = "half_range")]
    pub coefficients: Range,
    #[serde(default = "three")]
    pub order: u32,
    #[serde(default = "one")]
    pub p: f64,
}
fn half_range() -> Range {
    Range::Symmetric(0.5)
}
fn three() -> u32 {
    3
}

/// TorchIO `RandomBlur`: Gaussian filter, standard deviations in mm per axis.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlurSpec {
    #[serde(default = "blur_std")]
    pub std: Range3,
    #[serde(default = "one")]
    pub p: f64,
}
fn blur_std() -> Range3 {
    Range3::Between([0.0, 2.0])
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum NoiseKind {
    /// Additive Gaussian noise (TorchIO's `RandomNoise`).
    #[default]
    Gaussian,
    /// Magnitude of the image plus complex Gaussian noise: MRI's noise floor.
    Rician,
}

/// TorchIO `RandomNoise` (mean and standard deviation drawn per variant).
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NoiseSpec {
    #[serde(default = "zero")]
    pub mean: Range,
    #[serde(default = "noise_std")]
    pub std: Range,
    #[serde(default)]
    pub kind: NoiseKind,
    #[serde(default = "one")]
    pub p: f64,
}
fn zero() -> Range {
    Range::Symmetric(0.0)
}
fn noise_std() -> Range {
    Range::Between([0.0, 0.25])
}

/// TorchIO `RandomGamma`: `x ^ exp(log_gamma)` (sign kept for negative values).
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GammaSpec {
    #[serde(default = "log_gamma")]
    pub log_gamma: Range,
    #[serde(default = "one")]
    pub p: f64,
}
fn log_gamma() -> Range {
    Range::Symmetric(0.3)
}

/// TorchIO `RandomSwap`: `num_iterations` pairs of patches swapped.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SwapSpec {
    #[serde(default = "patch")]
    pub patch_size: OneOrThree<u32>,
    #[serde(default = "iterations")]
    pub num_iterations: u32,
    #[serde(default = "one")]
    pub p: f64,
}
fn patch() -> OneOrThree<u32> {
    OneOrThree::One(15)
}
fn iterations() -> u32 {
    100
}

/// TorchIO `RescaleIntensity`: percentiles of the input mapped linearly to `out_min_max`.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RescaleSpec {
    #[serde(default = "unit")]
    pub out_min_max: [f64; 2],
    #[serde(default = "all_percentiles")]
    pub percentiles: [f64; 2],
    #[serde(default = "one")]
    pub p: f64,
}
fn unit() -> [f64; 2] {
    [0.0, 1.0]
}
fn all_percentiles() -> [f64; 2] {
    [0.0, 100.0]
}

/// TorchIO `ZNormalization`: zero mean, unit standard deviation.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZNormSpec {
    /// Statistics over voxels above the mean only (TorchIO's `masking_method=mean`).
    #[serde(default)]
    pub foreground_only: bool,
    #[serde(default = "one")]
    pub p: f64,
}

/// TorchIO `RandomLabelsToImage`: a synthetic image from the label map, each label a Gaussian
/// of random mean and standard deviation.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabelsToImageSpec {
    #[serde(default = "default_mean")]
    pub mean: Range,
    #[serde(default = "default_std")]
    pub std: Range,
    /// Label 0 stays 0.
    #[serde(default)]
    pub ignore_background: bool,
    #[serde(default = "one")]
    pub p: f64,
}
fn default_mean() -> Range {
    Range::Between([0.1, 0.9])
}
fn default_std() -> Range {
    Range::Between([0.01, 0.1])
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OneOfSpec {
    pub transforms: Vec<TransformSpec>,
    /// Relative weights (default: equal).
    #[serde(default)]
    pub weights: Vec<f64>,
    #[serde(default = "one")]
    pub p: f64,
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SomeOfSpec {
    pub transforms: Vec<TransformSpec>,
    /// How many to apply: a number or `[a, b]`.
    pub k: Count,
    #[serde(default = "one")]
    pub p: f64,
}
