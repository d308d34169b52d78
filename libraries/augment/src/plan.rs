//! What one variant does: the transforms that were applied, each with every parameter drawn.
//! A plan is the manifest's `augment` column; replaying it (with the seed and variant, which
//! address the per-voxel random fields) gives the same bytes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::{Centre, Interpolation, NoiseKind, PadValue};

/// A drawn transform. `slot` is the transform's position in the composition (depth first),
/// part of the Philox counter of its per-voxel randomness.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(tag = "transform", rename_all = "snake_case")]
pub enum Applied {
    Flip {
        /// Array axes flipped.
        axes: Vec<u8>,
    },
    Affine {
        scales: [f64; 3],
        degrees: [f64; 3],
        translation: [f64; 3],
        center: Centre,
        default_pad_value: PadValue,
        interpolation: Interpolation,
    },
    Elastic {
        slot: u32,
        num_control_points: [u32; 3],
        max_displacement: [f64; 3],
        locked_borders: u8,
        interpolation: Interpolation,
    },
    Anisotropy {
        axis: u8,
        downsampling: f64,
    },
    Motion {
        /// Per movement: rotation (degrees) and translation (mm), and the k-space fraction
        /// where it starts.
        degrees: Vec<[f64; 3]>,
        translation: Vec<[f64; 3]>,
        times: Vec<f64>,
        interpolation: Interpolation,
    },
    Ghosting {
        num_ghosts: u32,
        axis: u8,
        intensity: f64,
        restore: Option<f64>,
    },
    Spike {
        /// Spike positions as fractions of the shifted spectrum along each axis, from its start
        /// (0.5 is the centre, the DC term).
        positions: Vec<[f64; 3]>,
        intensity: f64,
    },
    BiasField {
        order: u32,
        coefficients: Vec<f64>,
    },
    Blur {
        /// Standard deviations in mm per array axis.
        std: [f64; 3],
    },
    Noise {
        slot: u32,
        mean: f64,
        std: f64,
        kind: NoiseKind,
    },
    Gamma {
        gamma: f64,
    },
    Swap {
        patch_size: [u32; 3],
        /// Corner pairs `[i1, j1, k1, i2, j2, k2]` of the swapped patches, in order.
        pairs: Vec<[u32; 6]>,
    },
    Rescale {
        out_min_max: [f64; 2],
        percentiles: [f64; 2],
    },
    ZNormalize {
        foreground_only: bool,
    },
    LabelsToImage {
        /// `[label, mean, std]` for every label value present.
        classes: Vec<[f64; 3]>,
        slot: u32,
    },
}

impl Applied {
    pub fn name(&self) -> &'static str {
        match self {
            Applied::Flip { .. } => "flip",
            Applied::Affine { .. } => "affine",
            Applied::Elastic { .. } => "elastic",
            Applied::Anisotropy { .. } => "anisotropy",
            Applied::Motion { .. } => "motion",
            Applied::Ghosting { .. } => "ghosting",
            Applied::Spike { .. } => "spike",
            Applied::BiasField { .. } => "bias_field",
            Applied::Blur { .. } => "blur",
            Applied::Noise { .. } => "noise",
            Applied::Gamma { .. } => "gamma",
            Applied::Swap { .. } => "swap",
            Applied::Rescale { .. } => "rescale",
            Applied::ZNormalize { .. } => "z_normalize",
            Applied::LabelsToImage { .. } => "labels_to_image",
        }
    }

    /// Moves voxels (label maps follow with nearest neighbour).
    pub fn is_spatial(&self) -> bool {
        matches!(
            self,
            Applied::Flip { .. } | Applied::Affine { .. } | Applied::Elastic { .. }
        )
    }
}

/// One variant: its seed, index and the transforms applied in order.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct Plan {
    pub seed: u64,
    pub variant: u32,
    pub transforms: Vec<Applied>,
}
