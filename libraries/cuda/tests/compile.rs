//! NVRTC compiles kernels without a GPU; its errors carry the log and the kernel's file name.

use mindscan_cuda::testing::nvrtc_or_skip;
use mindscan_cuda::{compile_cubin, compile_ptx, probe};

const ADD: &str = r#"
extern "C" __global__ void add_one(float* y, const float* x, unsigned int n) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] + 1.0f;
}
"#;

#[test]
fn a_tiny_kernel_compiles_to_ptx_with_its_entry() {
    if !nvrtc_or_skip() {
        return;
    }
    let ptx = compile_ptx("add_one.cu", ADD, None).unwrap().to_src();
    assert!(ptx.contains(".entry add_one"), "{ptx}");
    assert!(probe().nvrtc_version.is_some());
}

#[test]
fn an_architecture_targets_that_compute_capability() {
    if !nvrtc_or_skip() {
        return;
    }
    let ptx = compile_ptx("add_one.cu", ADD, Some((9, 0)))
        .unwrap()
        .to_src();
    assert!(ptx.contains(".target sm_90"), "{ptx}");
}

/// What a device loads: machine code for its own architecture, no driver JIT needed.
#[test]
fn a_kernel_compiles_to_cubin_for_a_real_architecture() {
    if !nvrtc_or_skip() {
        return;
    }
    let cubin = compile_cubin("add_one.cu", ADD, (9, 0)).unwrap();
    assert_eq!(&cubin[..4], b"\x7fELF");
    assert!(cubin.windows(7).any(|w| w == b"add_one"));
}

/// `--fmad=false`: `a * b + c` stays a rounded multiply then add, like the CPU twin.
#[test]
fn multiply_then_add_is_not_fused_so_the_cpu_twin_rounds_the_same() {
    if !nvrtc_or_skip() {
        return;
    }
    let source = r#"
extern "C" __global__ void axpb(float* y, const float* x, float a, float b) {
    y[threadIdx.x] = x[threadIdx.x] * a + b;
}
"#;
    let ptx = compile_ptx("axpb.cu", source, None).unwrap().to_src();
    assert!(ptx.contains("mul.rn.f32"), "{ptx}");
    assert!(!ptx.contains("fma.rn.f32"), "{ptx}");
}

#[test]
fn a_syntax_error_gives_the_nvrtc_log_and_the_kernel_name() {
    if !nvrtc_or_skip() {
        return;
    }
    let source = "extern \"C\" __global__ void broken(float* y) { y[0] = 1.0f }";
    let err = format!("{:#}", compile_ptx("broken.cu", source, None).unwrap_err());
    assert!(
        err.starts_with("broken.cu: NVRTC compilation failed"),
        "{err}"
    );
    // The log itself: NVRTC's "<file>(<line>): error: ..." line.
    assert!(err.contains("broken.cu(1): error"), "{err}");
}

#[test]
fn without_nvrtc_compiling_is_an_error_not_a_panic() {
    if probe().nvrtc.is_ok() {
        println!("skipped: NVRTC is present");
        return;
    }
    let err = compile_ptx("add_one.cu", ADD, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("add_one.cu: cannot compile: NVRTC not found"),
        "{err}"
    );
}
