//! MONAI's 2D `DiffusionModelUNet` (monai.networks.nets.diffusion_model_unet, 1.6), forward
//! pass only, float32 on the CPU, loaded from `config.json` + `model.safetensors`.
//!
//! Activations are NHWC with a one-pixel zero border, so every 3x3 convolution is three GEMMs
//! over overlapping rows of its input (`layers::conv`); GroupNorm + SiLU is one pass that writes
//! the next convolution's input; attention runs per block of queries with the scores in cache.
//! Work is spread over the caller's rayon pool.
//!
//! - `config`: the config file and what is supported.
//! - `weights`: tensors by MONAI name through a prefix builder.
//! - `layers`: convolutions, norms, linear layers, attention, resampling, SIMD kernels.
//! - `blocks`: resnet, attention block, down/middle/up blocks.
//! - `model`: the network and the public `UNet`.

mod blocks;
mod config;
mod layers;
mod model;
mod weights;

pub use config::{CONFIG_FORMAT, PerLevel, UNetConfig};
pub use layers::tensor::Workspace;
pub use model::UNet;

#[cfg(test)]
mod tests;
