//! Diffusion stages over `mindscan-diffusion`: `diffusion.noise` (forward process: training
//! pairs from real images), `diffusion.sample` (a source of synthetic images from a trained
//! MONAI UNet) and `diffusion.img2img` (SDEdit: real images noised to a strength, denoised into
//! variants that keep the anatomy).

pub mod model;
pub mod noise;
pub mod sample;

mindscan_sdk::plugin!(
    name: "diffusion",
    stages: [noise::DiffusionNoise, sample::DiffusionSample, sample::DiffusionImg2Img]
);
