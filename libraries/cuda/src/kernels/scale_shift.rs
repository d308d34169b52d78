//! `y = x * scale + shift` over f32 voxels: the template for a kernel (STYLE rule 4).

use std::sync::Arc;

use anyhow::{Result, ensure};
use cudarc::driver::{CudaSlice, CudaStream, LaunchConfig, PushKernelArg};

use crate::gpu::Gpu;

/// The CUDA source, compiled at run time by NVRTC.
pub const SOURCE: &str = include_str!("scale_shift.cu");
/// File name for compiler messages.
pub const NAME: &str = "scale_shift.cu";
/// The `extern "C" __global__` entry point.
pub const ENTRY: &str = "scale_shift";

/// The CPU twin: defines the result the kernel must reproduce bit for bit.
pub fn scale_shift_cpu(x: &[f32], scale: f32, shift: f32, y: &mut [f32]) {
    assert_eq!(
        x.len(),
        y.len(),
        "scale_shift: input and output lengths differ"
    );
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x * scale + shift;
    }
}

/// Queues the kernel on `stream`; `y` must be at least as long as `x`. Compiles on the first
/// call for this device (do that in `Stage::new` by calling [`Gpu::function`] early).
pub fn scale_shift_cuda(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    x: &CudaSlice<f32>,
    scale: f32,
    shift: f32,
    y: &mut CudaSlice<f32>,
) -> Result<()> {
    ensure!(
        y.len() >= x.len(),
        "scale_shift: output has {} elements, input {}",
        y.len(),
        x.len()
    );
    let n = u32::try_from(x.len())?;
    if n == 0 {
        return Ok(());
    }
    let function = gpu.function(NAME, SOURCE, ENTRY)?;
    let mut launch = stream.launch_builder(&function);
    launch.arg(y).arg(x).arg(&scale).arg(&shift).arg(&n);
    // SAFETY: the arguments match scale_shift.cu's signature (float*, const float*, float,
    // float, unsigned int) in order and type, and the grid covers exactly n threads' bound.
    unsafe { launch.launch(LaunchConfig::for_num_elems(n)) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile_ptx;
    use crate::testing::{gpu_or_skip, nvrtc_or_skip};

    fn inputs() -> Vec<f32> {
        let mut x: Vec<f32> = (0..10_000).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
        x.extend([
            0.0,
            -0.0,
            1e-40,
            -1e-40,
            f32::MAX,
            f32::INFINITY,
            0.1,
            3.0e38,
        ]);
        x
    }

    #[test]
    fn the_source_compiles_with_nvrtc() {
        if !nvrtc_or_skip() {
            return;
        }
        let ptx = compile_ptx(NAME, SOURCE, None).unwrap().to_src();
        assert!(ptx.contains(".entry scale_shift"), "{ptx}");
    }

    #[test]
    fn the_gpu_matches_the_cpu_twin_bit_for_bit() {
        let Some(gpu) = gpu_or_skip() else { return };
        let x = inputs();
        let (scale, shift) = (0.7311_f32, -1024.1_f32);
        let mut want = vec![0.0; x.len()];
        scale_shift_cpu(&x, scale, shift, &mut want);

        let stream = gpu.stream().unwrap();
        let x_dev = stream.clone_htod(&x).unwrap();
        let mut y_dev = gpu.take::<f32>(&stream, x.len()).unwrap();
        scale_shift_cuda(&gpu, &stream, &x_dev, scale, shift, &mut y_dev).unwrap();
        let got = stream.clone_dtoh(&y_dev).unwrap();
        gpu.give(y_dev);

        let differ = (0..x.len())
            .filter(|&i| got[i].to_bits() != want[i].to_bits())
            .map(|i| (x[i], got[i], want[i]))
            .take(5)
            .collect::<Vec<_>>();
        assert!(differ.is_empty(), "(x, gpu, cpu): {differ:?}");
    }
}
