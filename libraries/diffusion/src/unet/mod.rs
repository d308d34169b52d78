//! MONAI's 2D `DiffusionModelUNet` (monai.networks.nets.diffusion_model_unet, 1.6), forward
//! pass only, float32 on the CPU, loaded from `config.json` + `model.safetensors`.
//!
//! Activations are NHWC with a one-pixel zero border. A 3x3 convolution on an even-sized input
//! with 8 or more channels runs as Winograd F(2x2, 3x3) (`layers::winograd`: 16 products of
//! `[tiles x cin] x [cin x cout]` instead of 36 multiplications per output block); otherwise
//! as three GEMMs over overlapping rows of its input with no im2col copy (`layers::conv`).
//! GroupNorm + SiLU is one pass that writes the next convolution's input; attention runs per
//! block of queries with the scores in cache. The products use a register-tiled AVX-512 kernel
//! (`layers::kernel`) where the CPU has one and the `gemm` crate elsewhere; element-wise loops
//! are compiled for AVX-512, AVX2 and baseline x86-64 and picked at run time. Work is spread
//! over the caller's rayon pool. Float32 throughout; outputs agree with PyTorch to about 1e-6
//! of their largest magnitude.
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
