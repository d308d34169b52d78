//! What this machine offers: the driver, NVRTC and the devices, found once per process.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::OnceLock;

use cudarc::driver::{result, sys};

use crate::locate;

/// One CUDA device as the driver reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The driver's ordinal: `cuda:N`.
    pub ordinal: usize,
    /// Marketing name, e.g. `NVIDIA H200`.
    pub name: String,
    /// (major, minor), e.g. (9, 0); kernels are compiled for `compute_<major><minor>`.
    pub compute_capability: (u32, u32),
    /// Device memory in bytes.
    pub total_memory: u64,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor) = self.compute_capability;
        let gib = self.total_memory as f64 / (1u64 << 30) as f64;
        write!(
            f,
            "cuda:{} {} (sm_{major}{minor}, {gib:.1} GiB)",
            self.ordinal, self.name
        )
    }
}

/// The result of looking for CUDA. Every field is an answer, never a panic.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The driver library (`libcuda.so.1`) cudarc binds to, or why none was found.
    pub driver: Result<PathBuf, String>,
    /// The CUDA version the driver supports, e.g. (13, 0).
    pub driver_version: Option<(u32, u32)>,
    /// The NVRTC library cudarc binds to, or why none was found (see [`crate::NVRTC_ENV`]).
    pub nvrtc: Result<PathBuf, String>,
    /// NVRTC's version; its CUBIN loads on drivers of this CUDA major (any minor) or newer.
    pub nvrtc_version: Option<(u32, u32)>,
    /// The cuFFT library cudarc's `cufft` module binds to, or why none was found. Check it
    /// before any `cudarc::cufft` call: like the others, cudarc panics when it is missing.
    pub cufft: Result<PathBuf, String>,
    /// The devices; empty without a driver or when the driver sees none.
    pub devices: Vec<DeviceInfo>,
    /// Why `devices` is empty although the driver loaded (e.g. `CUDA_ERROR_NO_DEVICE`).
    pub device_error: Option<String>,
}

impl Probe {
    /// Whether NVRTC compiles here (no GPU needed for that).
    pub fn has_nvrtc(&self) -> bool {
        self.nvrtc.is_ok()
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = |v: Option<(u32, u32)>| v.map_or(String::new(), |(a, b)| format!(" {a}.{b}"));
        match &self.driver {
            Ok(path) => writeln!(
                f,
                "CUDA driver: {} (CUDA{})",
                path.display(),
                version(self.driver_version)
            )?,
            Err(e) => writeln!(f, "CUDA driver: none ({e})")?,
        }
        match &self.nvrtc {
            Ok(path) => writeln!(
                f,
                "NVRTC: {} ({})",
                path.display(),
                version(self.nvrtc_version).trim()
            )?,
            Err(e) => writeln!(f, "NVRTC: none ({e})")?,
        }
        match &self.cufft {
            Ok(path) => writeln!(f, "cuFFT: {}", path.display())?,
            Err(e) => writeln!(f, "cuFFT: none ({e})")?,
        }
        for device in &self.devices {
            writeln!(f, "{device}")?;
        }
        if let Some(e) = &self.device_error {
            writeln!(f, "devices: none ({e})")?;
        }
        Ok(())
    }
}

/// Looks for the driver, NVRTC and the devices once per process and keeps the answer.
///
/// Loads the libraries it finds (cudarc would on first use anyway) but creates no context, so
/// it costs no device memory.
pub fn probe() -> &'static Probe {
    static PROBE: OnceLock<Probe> = OnceLock::new();
    PROBE.get_or_init(run)
}

/// Convenience for tests and `auto`: NVRTC can compile kernels in this process.
pub fn nvrtc_available() -> bool {
    probe().has_nvrtc()
}

fn run() -> Probe {
    let driver = locate::by_name(&["cuda", "nvcuda"], locate::DRIVER_SYMBOL)
        .map_err(|e| format!("CUDA driver library (libcuda.so.1) not found: {e}"));
    let explicit = std::env::var_os(locate::NVRTC_ENV).filter(|v| !v.is_empty());
    let nvrtc = locate::nvrtc(explicit.as_deref(), &locate::search_files(&locate::NVRTC));
    let cufft = locate::find(&locate::CUFFT, &locate::search_files(&locate::CUFFT));
    let nvrtc_version = match nvrtc {
        Ok(_) => guarded(nvrtc_version).ok().flatten(),
        Err(_) => None,
    };
    let (driver_version, devices, device_error) = match driver {
        Ok(_) => match guarded(enumerate).and_then(|r| r) {
            Ok((version, devices)) if devices.is_empty() => (
                version,
                devices,
                Some("the driver reports 0 devices".to_string()),
            ),
            Ok((version, devices)) => (version, devices, None),
            Err(e) => (guarded(driver_version).ok().flatten(), Vec::new(), Some(e)),
        },
        Err(_) => (None, Vec::new(), None),
    };
    Probe {
        driver,
        driver_version,
        nvrtc,
        nvrtc_version,
        cufft,
        devices,
        device_error,
    }
}

/// Runs a cudarc call that should not panic once its library is known to load (a missing
/// symbol in an old library still would), turning a panic into an error.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        format!("cudarc panicked: {text}")
    })
}

fn driver_version() -> Option<(u32, u32)> {
    let mut version = 0;
    // SAFETY: the driver library is loaded (checked by the caller); writes one int.
    unsafe { sys::cuDriverGetVersion(&mut version) }
        .result()
        .ok()?;
    let version = u32::try_from(version).ok()?;
    Some((version / 1000, version % 1000 / 10))
}

fn nvrtc_version() -> Option<(u32, u32)> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: NVRTC is loaded (checked by the caller); writes two ints.
    let status = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    (status == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS)
        .then(|| Some((u32::try_from(major).ok()?, u32::try_from(minor).ok()?)))
        .flatten()
}

type Enumerated = (Option<(u32, u32)>, Vec<DeviceInfo>);

fn enumerate() -> Result<Enumerated, String> {
    use sys::CUdevice_attribute::{
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR as MAJOR,
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR as MINOR,
    };
    result::init().map_err(|e| format!("cuInit failed: {e}"))?;
    let version = driver_version();
    let count = result::device::get_count().map_err(|e| format!("cuDeviceGetCount: {e}"))?;
    let mut devices = Vec::new();
    for ordinal in 0..count {
        let fail = |what: &str, e: result::DriverError| format!("cuda:{ordinal}: {what}: {e}");
        let device = result::device::get(ordinal).map_err(|e| fail("cuDeviceGet", e))?;
        let name = result::device::get_name(device).map_err(|e| fail("name", e))?;
        // SAFETY: `device` came from cuDeviceGet.
        let (major, minor, total) = unsafe {
            (
                result::device::get_attribute(device, MAJOR).map_err(|e| fail("capability", e))?,
                result::device::get_attribute(device, MINOR).map_err(|e| fail("capability", e))?,
                result::device::total_mem(device).map_err(|e| fail("memory", e))?,
            )
        };
        devices.push(DeviceInfo {
            ordinal: ordinal as usize,
            name,
            compute_capability: (major as u32, minor as u32),
            total_memory: total as u64,
        });
    }
    Ok((version, devices))
}
