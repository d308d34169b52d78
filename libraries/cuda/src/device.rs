//! Choosing where a stage runs: `auto`, `cpu`, `cuda` or `cuda:N`.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Result, anyhow, bail};

use crate::gpu::Gpu;
use crate::probe::probe;

/// What a pipeline asked for, as written in its `device:` parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeviceRequest {
    /// The first GPU if one is usable, else the CPU (and say why).
    #[default]
    Auto,
    /// The CPU twin, even where a GPU exists.
    Cpu,
    /// This GPU or an error: a run that asked for a GPU must not quietly take hours on the CPU.
    Cuda(usize),
}

impl FromStr for DeviceRequest {
    type Err = anyhow::Error;

    /// `auto`, `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match text.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(ordinal)) => Ok(Self::Cuda(ordinal)),
                _ => Err(anyhow!(
                    "unknown device {text:?}: expected \"auto\", \"cpu\", \"cuda\" or \
                     \"cuda:N\" with N a device number (e.g. \"cuda:0\")"
                )),
            },
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Where a stage will run.
#[derive(Clone, Debug)]
pub enum Resolved {
    /// On the CPU; `reason` says why (`cpu requested`, or what `auto` found missing), for the
    /// one log line a stage writes when it starts.
    Cpu { reason: String },
    /// On this GPU, shared by every stage of the process that asked for it.
    Cuda(Arc<Gpu>),
}

impl Resolved {
    /// The GPU, if this is one.
    pub fn gpu(&self) -> Option<&Arc<Gpu>> {
        match self {
            Self::Cuda(gpu) => Some(gpu),
            Self::Cpu { .. } => None,
        }
    }
}

impl fmt::Display for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu { reason } => write!(f, "cpu ({reason})"),
            Self::Cuda(gpu) => write!(f, "{}", gpu.info()),
        }
    }
}

/// Turns a request into a device, opening the GPU (its primary context) the first time.
///
/// `Cuda(n)` fails with what is missing: the driver library, NVRTC, any device, device `n`, or
/// a driver of an older CUDA major than NVRTC. `Auto` never fails: it falls back to the CPU
/// with that message as the reason.
pub fn resolve(request: DeviceRequest) -> Result<Resolved> {
    match request {
        DeviceRequest::Cpu => Ok(Resolved::Cpu {
            reason: "cpu requested".into(),
        }),
        DeviceRequest::Cuda(ordinal) => open(ordinal)
            .map(Resolved::Cuda)
            .map_err(|e| anyhow!("cuda:{ordinal} requested but unusable: {e:#}")),
        DeviceRequest::Auto => Ok(match open(0) {
            Ok(gpu) => Resolved::Cuda(gpu),
            Err(e) => Resolved::Cpu {
                reason: format!("auto: no usable GPU: {e:#}"),
            },
        }),
    }
}

/// One `Gpu` per ordinal for this copy of the crate, so stages share its kernels and pool.
fn open(ordinal: usize) -> Result<Arc<Gpu>> {
    static OPEN: Mutex<Vec<Arc<Gpu>>> = Mutex::new(Vec::new());
    let p = probe();
    if let Err(e) = &p.driver {
        bail!("{e}");
    }
    if let Err(e) = &p.nvrtc {
        bail!("{e}");
    }
    if p.devices.is_empty() {
        bail!(
            "no CUDA device ({})",
            p.device_error.as_deref().unwrap_or("none reported")
        );
    }
    let Some(info) = p.devices.get(ordinal) else {
        let list: Vec<String> = p.devices.iter().map(ToString::to_string).collect();
        bail!(
            "there are only {} device(s): {}",
            p.devices.len(),
            list.join(", ")
        );
    };
    // CUBIN from NVRTC 13.x loads on any CUDA 13 driver, not on a CUDA 12 one.
    if let (Some(driver), Some(nvrtc)) = (p.driver_version, p.nvrtc_version)
        && driver.0 < nvrtc.0
    {
        bail!(
            "the driver supports CUDA {}.{} but NVRTC is {}.{}: its kernels need a CUDA {} \
             driver; update the driver or use a CUDA {} NVRTC",
            driver.0,
            driver.1,
            nvrtc.0,
            nvrtc.1,
            nvrtc.0,
            driver.0
        );
    }
    let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(gpu) = open.iter().find(|g| g.info().ordinal == ordinal) {
        return Ok(gpu.clone());
    }
    let gpu = Arc::new(Gpu::open(info.clone())?);
    open.push(gpu.clone());
    Ok(gpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_from_auto_cpu_cuda_and_cuda_n() {
        for (text, want) in [
            ("auto", DeviceRequest::Auto),
            ("cpu", DeviceRequest::Cpu),
            ("cuda", DeviceRequest::Cuda(0)),
            ("cuda:0", DeviceRequest::Cuda(0)),
            ("cuda:3", DeviceRequest::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceRequest>().unwrap(), want, "{text}");
        }
    }

    #[test]
    fn a_request_prints_as_it_is_written() {
        for text in ["auto", "cpu", "cuda:0", "cuda:12"] {
            assert_eq!(text.parse::<DeviceRequest>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_accepted_forms() {
        for text in [
            "gpu", "CUDA", "cuda:", "cuda:-1", "cuda:x", "cuda0", " cpu", "",
        ] {
            let err = text.parse::<DeviceRequest>().unwrap_err().to_string();
            assert!(err.contains(&format!("{text:?}")), "{err}");
            assert!(err.contains("\"cuda:N\""), "{err}");
        }
    }
}
