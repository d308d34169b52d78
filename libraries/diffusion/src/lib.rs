//! Denoising diffusion at dataset scale: MONAI's noise schedules and DDPM/DDIM schedulers
//! (`schedule`), its 2D `DiffusionModelUNet` loaded from safetensors (`unet`), and the sampling
//! loops that tie them together with counter-based noise (`sampler`).
//!
//! MONAI defines the result: every formula follows `monai.networks.schedulers` and
//! `monai.networks.nets.diffusion_model_unet` (1.6), quirks included, and the tests compare
//! against fixtures written by MONAI itself (`tools/make_fixtures.py`).

pub mod sampler;
pub mod schedule;
pub mod tensor_file;
pub mod unet;
