//! Looking for CUDA never panics and says what is missing.

use mindscan_cuda::{DeviceRequest, Resolved, probe, resolve};

/// Without a driver the probe names the library it looked for; with one, it found a real file.
#[test]
fn probing_names_the_missing_driver_library_and_does_not_panic() {
    let p = probe();
    match &p.driver {
        Err(message) => {
            assert!(message.contains("libcuda.so"), "{message}");
            assert!(p.devices.is_empty());
            assert_eq!(p.driver_version, None);
        }
        Ok(path) => assert!(path.exists() || path.is_relative(), "{}", path.display()),
    }
    // The summary a CLI prints is built from the same answers.
    assert!(p.to_string().contains("CUDA driver:"), "{p}");
}

#[test]
fn asking_for_cuda_without_a_gpu_is_an_error_naming_what_is_missing() {
    if !probe().devices.is_empty() && probe().nvrtc.is_ok() {
        println!("skipped: this machine has a usable GPU");
        return;
    }
    let err = format!("{:#}", resolve(DeviceRequest::Cuda(0)).unwrap_err());
    assert!(err.starts_with("cuda:0 requested but unusable: "), "{err}");
    let p = probe();
    let names_it = if p.driver.is_err() {
        err.contains("CUDA driver library (libcuda.so.1) not found")
    } else if p.nvrtc.is_err() {
        err.contains("NVRTC not found")
    } else {
        err.contains("no CUDA device")
    };
    assert!(names_it, "{err}");
}

#[test]
fn a_device_number_past_the_last_device_is_an_error() {
    let err = format!("{:#}", resolve(DeviceRequest::Cuda(999)).unwrap_err());
    assert!(err.starts_with("cuda:999 requested but unusable"), "{err}");
}

#[test]
fn auto_without_a_gpu_falls_back_to_the_cpu_and_says_why() {
    match resolve(DeviceRequest::Auto).unwrap() {
        Resolved::Cpu { reason } => {
            assert!(reason.starts_with("auto: no usable GPU: "), "{reason}");
            assert!(
                reason.len() > "auto: no usable GPU: ".len() + 10,
                "{reason}"
            );
        }
        Resolved::Cuda(gpu) => assert_eq!(gpu.info().ordinal, 0),
    }
}

#[test]
fn cpu_is_always_available() {
    let device = resolve(DeviceRequest::Cpu).unwrap();
    assert!(device.gpu().is_none());
    assert_eq!(device.to_string(), "cpu (cpu requested)");
}
