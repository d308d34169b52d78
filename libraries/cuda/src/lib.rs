//! CUDA plumbing shared by every GPU stage: find the libraries without panicking, choose the
//! device, compile kernels with NVRTC, cache them, pool device buffers.
//!
//! Everything loads at run time (cudarc's `dynamic-loading`), so a build without CUDA runs its
//! CPU twins; [`probe`] says what is missing before cudarc is called, because cudarc panics
//! when a library is absent.
//!
//! A kernel follows STYLE rule 4: `src/kernels/<op>.cu`, `<op>_cpu` (defines the result),
//! `<op>_cuda`, and tests that always compile the source and, with a GPU, compare to the twin
//! ([`kernels::scale_shift`] is the template).
//!
//! ```no_run
//! use mindscan_cuda::{DeviceRequest, Resolved, resolve};
//! # fn main() -> anyhow::Result<()> {
//! let device = resolve("auto".parse::<DeviceRequest>()?)?;
//! eprintln!("intensity.rescale: running on {device}"); // "cpu (auto: no usable GPU: ...)"
//! if let Resolved::Cuda(gpu) = &device {
//!     let stream = gpu.stream()?;
//!     let x = stream.clone_htod(&[1.0f32, 2.0, 3.0])?;
//!     let mut y = gpu.take::<f32>(&stream, 3)?;
//!     mindscan_cuda::kernels::scale_shift::scale_shift_cuda(gpu, &stream, &x, 2.0, 1.0, &mut y)?;
//!     assert_eq!(stream.clone_dtoh(&y)?, [3.0, 5.0, 7.0]);
//!     gpu.give(y);
//! }
//! # Ok(())
//! # }
//! ```

mod compile;
mod device;
mod gpu;
pub mod kernels;
mod locate;
mod pool;
mod probe;
pub mod testing;

/// The cudarc this crate is built against; use it rather than a cudarc dependency of your own,
/// so slices and streams are the same types.
pub use cudarc;
pub use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, DeviceRepr,
    LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
pub use cudarc::nvrtc::Ptx;

pub use compile::{NVRTC_OPTIONS, compile_cubin, compile_ptx};
pub use device::{DeviceRequest, Resolved, resolve};
pub use gpu::Gpu;
pub use locate::NVRTC_ENV;
pub use probe::{DeviceInfo, Probe, nvrtc_available, probe};
