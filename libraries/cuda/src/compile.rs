//! CUDA C++ source to PTX or CUBIN with NVRTC. Needs only libnvrtc, no GPU, so CI compiles
//! every kernel.
//!
//! A device gets CUBIN (`sm_XY` machine code), not PTX: PTX from NVRTC 13.2 only loads on a
//! 13.2+ driver (the driver JIT must know its PTX version), while CUBIN from any 13.x NVRTC
//! loads on every CUDA 13 driver (minor-version compatibility), and needs no JIT at load.

use std::ffi::{CString, c_char};

use anyhow::{Result, anyhow, bail};
use cudarc::nvrtc::{Ptx, result, sys};

use crate::probe::{guarded, probe};

/// Flags every kernel is compiled with.
///
/// - `--fmad=false`: NVRTC otherwise fuses `a * b + c` into one FMA (one rounding), while the
///   CPU twin rounds twice (Rust never contracts), so results would differ in the last bit.
///   Without fusion, element-wise kernels match their twin bit for bit and parity tests can
///   compare exactly. A kernel that wants an FMA writes `fmaf(a, b, c)` and its twin
///   `a.mul_add(b, c)`: still identical. Cost: a few percent on arithmetic-bound kernels.
///   Division and square root stay IEEE-rounded and denormals are kept (NVRTC's defaults
///   `--prec-div=true --prec-sqrt=true --ftz=false`), for the same reason.
/// - `--std=c++17`: `if constexpr`, structured bindings in kernel code.
/// - `-default-device`: helper functions need no `__device__`, so one helper may be shared by
///   several kernels of a file.
pub const NVRTC_OPTIONS: &[&str] = &["--fmad=false", "--std=c++17", "-default-device"];

/// Compiles `source` (a `.cu` file's text; entry points `extern "C" __global__` so their
/// names survive) to PTX for `compute_<major><minor>`, or NVRTC's default target when `arch`
/// is `None`. For tests and inspection; [`crate::Gpu::function`] loads CUBIN instead.
///
/// `name` (e.g. `"scale_shift.cu"`) is the file name NVRTC puts in its messages; errors
/// start with it and include NVRTC's whole log.
pub fn compile_ptx(name: &str, source: &str, arch: Option<(u32, u32)>) -> Result<Ptx> {
    let target = arch.map(|(major, minor)| format!("--gpu-architecture=compute_{major}{minor}"));
    let mut text = compile(name, source, target, Output::Ptx)?;
    // NVRTC counts the terminating NUL; the driver's loader adds its own.
    while text.last() == Some(&0) {
        text.pop();
    }
    let text = String::from_utf8(text).map_err(|_| anyhow!("{name}: PTX is not UTF-8"))?;
    Ok(Ptx::from_src(text))
}

/// Compiles `source` to CUBIN for `sm_<major><minor>`: what a device of that compute
/// capability loads (`Ptx::from_binary` then `load_module`). Errors as for [`compile_ptx`].
pub fn compile_cubin(name: &str, source: &str, arch: (u32, u32)) -> Result<Vec<u8>> {
    let target = format!("--gpu-architecture=sm_{}{}", arch.0, arch.1);
    compile(name, source, Some(target), Output::Cubin)
}

#[derive(Clone, Copy)]
enum Output {
    Ptx,
    Cubin,
}

fn compile(name: &str, source: &str, target: Option<String>, output: Output) -> Result<Vec<u8>> {
    if let Err(why) = &probe().nvrtc {
        bail!("{name}: cannot compile: {why}");
    }
    let (Ok(c_source), Ok(c_name)) = (CString::new(source), CString::new(name)) else {
        bail!("{name}: the source or its name contains a NUL byte");
    };
    let mut options: Vec<String> = NVRTC_OPTIONS.iter().map(|o| o.to_string()).collect();
    options.extend(target);
    guarded(|| run(name, &c_source, &c_name, &options, output))
        .map_err(|e| anyhow!("{name}: {e}"))?
}

/// An NVRTC program, destroyed when dropped.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: created by nvrtcCreateProgram and destroyed only here.
        let _ = unsafe { result::destroy_program(self.0) };
    }
}

fn run(
    name: &str,
    source: &CString,
    c_name: &CString,
    options: &[String],
    output: Output,
) -> Result<Vec<u8>> {
    let nvrtc_error = |call: &str, e: result::NvrtcError| anyhow!("{name}: {call}: {:?}", e.0);
    let program = Program(
        result::create_program(source, Some(c_name))
            .map_err(|e| nvrtc_error("nvrtcCreateProgram", e))?,
    );
    // SAFETY: `program` is live; `source` and `c_name` outlive it (borrowed for this call).
    if let Err(e) = unsafe { result::compile_program(program.0, options) } {
        // SAFETY: as above.
        let log = unsafe { result::get_program_log(program.0) }
            .map(|raw| c_text(&raw))
            .unwrap_or_else(|e| format!("(no log: {:?})", e.0));
        bail!(
            "{name}: NVRTC compilation failed ({:?}; options {}):\n{}",
            e.0,
            options.join(" "),
            log.trim_end()
        );
    }
    let bytes = match output {
        // SAFETY: `program` compiled; the buffer has the size NVRTC reported.
        Output::Ptx => unsafe { result::get_ptx(program.0) }
            .map(|raw| raw.iter().map(|&c| c as u8).collect())
            .map_err(|e| nvrtc_error("nvrtcGetPTX", e))?,
        Output::Cubin => unsafe {
            let mut size = 0usize;
            sys::nvrtcGetCUBINSize(program.0, &mut size)
                .result()
                .map_err(|e| nvrtc_error("nvrtcGetCUBINSize", e))?;
            let mut cubin = vec![0u8; size];
            sys::nvrtcGetCUBIN(program.0, cubin.as_mut_ptr().cast::<c_char>())
                .result()
                .map_err(|e| nvrtc_error("nvrtcGetCUBIN", e))?;
            cubin
        },
    };
    Ok(bytes)
}

/// NVRTC's NUL-terminated text as a string.
fn c_text(raw: &[c_char]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// FNV-1a, 64 bits: a stable, dependency-free key for cached kernels.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_is_standard_fnv1a64() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn nvrtc_text_stops_at_its_nul() {
        let raw: Vec<c_char> = b"ok\0junk".iter().map(|&b| b as c_char).collect();
        assert_eq!(c_text(&raw), "ok");
    }
}
