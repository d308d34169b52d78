//! Skipping GPU and NVRTC tests where the machine lacks them, unless CI says it must not.

use std::sync::Arc;

use crate::device::{DeviceRequest, Resolved, resolve};
use crate::gpu::Gpu;
use crate::probe::probe;

/// Set to `1` where NVRTC is installed (CI): a compile test then fails instead of skipping.
pub const REQUIRE_NVRTC_ENV: &str = "MINDSCAN_REQUIRE_NVRTC";
/// Set to `1` on a GPU machine: a GPU test then fails instead of skipping.
pub const REQUIRE_CUDA_ENV: &str = "MINDSCAN_REQUIRE_CUDA";

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// True when NVRTC can compile. Otherwise prints `skipped: no NVRTC (...)` and returns false,
/// or panics if [`REQUIRE_NVRTC_ENV`] is `1`.
pub fn nvrtc_or_skip() -> bool {
    match &probe().nvrtc {
        Ok(_) => true,
        Err(why) if required(REQUIRE_NVRTC_ENV) => {
            panic!("{REQUIRE_NVRTC_ENV}=1 but NVRTC is missing: {why}")
        }
        Err(why) => {
            println!("skipped: no NVRTC ({why})");
            false
        }
    }
}

/// `cuda:0`, or `None` after printing `skipped: no CUDA (...)`; panics instead if
/// [`REQUIRE_CUDA_ENV`] is `1`.
pub fn gpu_or_skip() -> Option<Arc<Gpu>> {
    let why = match resolve(DeviceRequest::Cuda(0)) {
        Ok(Resolved::Cuda(gpu)) => return Some(gpu),
        Ok(Resolved::Cpu { reason }) => reason,
        Err(e) => format!("{e:#}"),
    };
    if required(REQUIRE_CUDA_ENV) {
        panic!("{REQUIRE_CUDA_ENV}=1 but there is no usable GPU: {why}");
    }
    println!("skipped: no CUDA ({why})");
    None
}
