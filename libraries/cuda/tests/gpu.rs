//! The device side: kernels compile once, buffers come back, workers get their own streams.

use std::sync::Arc;

use mindscan_cuda::testing::gpu_or_skip;
use mindscan_cuda::{DeviceRequest, LaunchConfig, PushKernelArg, resolve};

const FILL: &str = r#"
extern "C" __global__ void fill(float* y, float value, unsigned int n) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = value;
}
"#;

#[test]
fn every_request_for_a_device_gets_the_same_gpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let again = resolve(DeviceRequest::Cuda(0)).unwrap();
    assert!(Arc::ptr_eq(&gpu, again.gpu().unwrap()));
    assert!(gpu.context().is_primary());
}

#[test]
fn a_source_compiles_once_however_often_it_is_asked_for() {
    let Some(gpu) = gpu_or_skip() else { return };
    let source = format!("{FILL}\n// once: {}\n", std::process::id());
    let before = gpu.kernels_compiled();
    let first = gpu.function("fill.cu", &source, "fill").unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (gpu, source) = (gpu.clone(), source.clone());
            std::thread::spawn(move || gpu.function("fill.cu", &source, "fill").unwrap())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().cu_function(), first.cu_function());
    }
    assert_eq!(gpu.kernels_compiled(), before + 1);
}

#[test]
fn a_missing_entry_point_is_an_error_naming_it() {
    let Some(gpu) = gpu_or_skip() else { return };
    let err = format!("{:#}", gpu.function("fill.cu", FILL, "fil").unwrap_err());
    assert!(err.contains("fill.cu: no kernel `fil`"), "{err}");
}

#[test]
fn each_worker_stream_launches_a_three_argument_kernel() {
    let Some(gpu) = gpu_or_skip() else { return };
    let fill = gpu.function("fill.cu", FILL, "fill").unwrap();
    let workers: Vec<_> = (0..3u32)
        .map(|w| {
            let (gpu, fill) = (gpu.clone(), fill.clone());
            std::thread::spawn(move || {
                let stream = gpu.stream().unwrap();
                let n = 5000u32 + w;
                let value = w as f32 + 0.5;
                let mut y = gpu.take::<f32>(&stream, n as usize).unwrap();
                let mut launch = stream.launch_builder(&fill);
                launch.arg(&mut y).arg(&value).arg(&n);
                // SAFETY: (float*, float, unsigned int) as in FILL.
                unsafe { launch.launch(LaunchConfig::for_num_elems(n)) }.unwrap();
                let host = stream.clone_dtoh(&y).unwrap();
                assert!(host.iter().all(|&v| v == value), "worker {w}");
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn a_given_back_buffer_is_reused_and_comes_back_zeroed() {
    let Some(gpu) = gpu_or_skip() else { return };
    let stream = gpu.stream().unwrap();
    // A length no other test uses, so the pool slot is ours.
    let len = 12_345;
    let dirty = stream.clone_htod(&vec![7u8; len]).unwrap();
    let before = gpu.pooled_bytes();
    gpu.give(dirty);
    assert_eq!(gpu.pooled_bytes(), before + len);
    let again = gpu.take::<u8>(&stream, len).unwrap();
    assert_eq!(gpu.pooled_bytes(), before);
    assert!(stream.clone_dtoh(&again).unwrap().iter().all(|&b| b == 0));
}
