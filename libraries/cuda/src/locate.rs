//! Finding the CUDA driver, NVRTC and cuFFT before cudarc looks for them.
//!
//! cudarc 0.19 (`dynamic-loading`) opens a library on its first call, trying a fixed list of
//! names through the dynamic linker (`cudarc::get_lib_name_candidates`: `libnvrtc.so`, ...,
//! `libnvrtc.so.13`, `.12`, ..., `.1`), and **panics** when none opens. It takes no path and
//! reads no variable of its own, only what `dlopen` itself honours (`LD_LIBRARY_PATH`,
//! `ld.so.cache`, rpath). So we try the same names first and call cudarc only once one opens.
//!
//! NVRTC may also live where the linker does not look (`MINDSCAN_NVRTC`, a pip wheel, a toolkit
//! folder). We `dlopen` that file by absolute path and keep it loaded: glibc answers a later
//! `dlopen("libnvrtc.so.13")` with an already loaded object whose SONAME is that name, so
//! cudarc's search then lands on our file. We check that it really does (a `libnvrtc.so` on the
//! linker path would be tried first) instead of assuming it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use libloading::Library;

/// Absolute path of the NVRTC library to use (`.../libnvrtc.so.13`), overriding the search.
pub const NVRTC_ENV: &str = "MINDSCAN_NVRTC";

/// A library cudarc loads by name, and where else a copy may be.
pub(crate) struct Lib {
    /// cudarc's name for it, the argument of `get_lib_name_candidates`.
    pub name: &'static str,
    /// For messages.
    pub label: &'static str,
    /// A function it exports, to tell it from another file and ask the linker for its path.
    pub symbol: &'static str,
    /// (folder under site-packages, file) of its pip wheels, CUDA 13 first; the same file names
    /// are looked for in toolkit `lib64` folders.
    pub wheels: &'static [(&'static str, &'static str)],
    /// The wheel that provides it for CUDA 13.0.
    pub pip: &'static str,
}

pub(crate) const NVRTC: Lib = Lib {
    name: "nvrtc",
    label: "NVRTC",
    symbol: "nvrtcVersion",
    wheels: &[
        ("nvidia/cu13/lib", "libnvrtc.so.13"),
        ("nvidia/cuda_nvrtc/lib", "libnvrtc.so.12"),
    ],
    pip: "nvidia-cuda-nvrtc==13.0.88",
};

/// cuFFT's major lags CUDA's: CUDA 13.0 ships libcufft.so.12, CUDA 12 ships .so.11.
pub(crate) const CUFFT: Lib = Lib {
    name: "cufft",
    label: "cuFFT",
    symbol: "cufftPlan3d",
    wheels: &[
        ("nvidia/cu13/lib", "libcufft.so.12"),
        ("nvidia/cufft/lib", "libcufft.so.11"),
    ],
    pip: "nvidia-cufft==12.0.0.61",
};

/// A function every driver exports.
pub(crate) const DRIVER_SYMBOL: &str = "cuInit";

/// The file the dynamic linker opens for the first of cudarc's candidate names of `libs`, the
/// order cudarc itself uses, so the answer is the library cudarc will bind to.
pub(crate) fn by_name(libs: &[&str], symbol: &str) -> Result<PathBuf, String> {
    let names: Vec<String> = libs
        .iter()
        .flat_map(|lib| cudarc::get_lib_name_candidates(lib))
        .collect();
    let mut errors = Vec::new();
    for name in &names {
        // SAFETY: runs the library's initialisers, exactly what cudarc's own dlopen would do.
        match unsafe { Library::new(name) } {
            Ok(lib) => return Ok(file_of(&lib, symbol).unwrap_or_else(|| PathBuf::from(name))),
            Err(e) => errors.push(reason(&e)),
        }
    }
    // A file that exists but cannot load (missing dependency, wrong architecture) says more
    // than the dozens of "No such file" lines.
    let telling = errors
        .iter()
        .find(|e| !e.contains("No such file"))
        .or(errors.first())
        .cloned()
        .unwrap_or_default();
    // The names a Linux install really has, from the full list cudarc tries.
    let usual: Vec<String> = cudarc::get_lib_name_candidates(libs[0])
        .into_iter()
        .filter(|n| {
            [".so", ".so.1", ".so.12", ".so.13"]
                .iter()
                .any(|s| n.ends_with(s))
        })
        .filter(|n| !n.contains("64"))
        .collect();
    Err(format!(
        "dlopen failed for all {} names cudarc tries ({}, ...): {telling}; \
         add the library's folder to LD_LIBRARY_PATH",
        names.len(),
        usual.join(", "),
    ))
}

/// libloading's message is "dlopen failed"; the linker's own reason is its source.
fn reason(e: &libloading::Error) -> String {
    std::error::Error::source(e).map_or_else(|| e.to_string(), ToString::to_string)
}

/// Locates NVRTC: `explicit` (the value of [`NVRTC_ENV`]) if given, else as [`find`] does.
/// Returns the file cudarc will use.
pub(crate) fn nvrtc(explicit: Option<&OsStr>, files: &[PathBuf]) -> Result<PathBuf, String> {
    let found = match explicit {
        Some(value) => {
            let path = Path::new(value);
            if !path.is_absolute() {
                return Err(format!(
                    "{NVRTC_ENV}={}: must be an absolute path to libnvrtc.so.13",
                    path.display()
                ));
            }
            preload(&NVRTC, path).map_err(|e| format!("{NVRTC_ENV}={}: {e}", path.display()))?
        }
        None => find(&NVRTC, files)
            .map_err(|e| format!("{e} or set {NVRTC_ENV}=/path/to/libnvrtc.so.13"))?,
    };
    preload_builtins(&found);
    Ok(found)
}

/// Locates `lib`: the linker's search by cudarc's names, else the first of `files` (from
/// [`search_files`]) that loads. Returns the file cudarc will use.
pub(crate) fn find(lib: &Lib, files: &[PathBuf]) -> Result<PathBuf, String> {
    let linker = match by_name(&[lib.name], lib.symbol) {
        Ok(path) => return Ok(path),
        Err(e) => e,
    };
    let mut refused = String::new();
    for file in files.iter().filter(|f| f.is_file()) {
        match preload(lib, file) {
            Ok(path) => return Ok(path),
            Err(e) => refused.push_str(&format!(" (refused {}: {e})", file.display())),
        }
    }
    let (folder, file) = lib.wheels[0];
    Err(format!(
        "{} not found: {linker}; no pip wheel or toolkit copy in the {} places searched (e.g. \
         <site-packages>/{folder}/{file}, /usr/local/cuda/lib64){refused}; \
         `pip install {}`",
        lib.label,
        files.len(),
        lib.pip
    ))
}

/// Loads `file` for good, then checks cudarc's by-name search reaches this very file.
fn preload(lib: &Lib, file: &Path) -> Result<PathBuf, String> {
    // SAFETY: as in `by_name`; this is the library cudarc is about to call.
    let handle =
        unsafe { Library::new(file) }.map_err(|e| format!("cannot load: {}", reason(&e)))?;
    let loaded = file_of(&handle, lib.symbol)
        .ok_or_else(|| format!("loaded, but it has no `{}`: not {}", lib.symbol, lib.label))?;
    // Never unloaded: cudarc's lookups by name depend on it staying resident.
    std::mem::forget(handle);
    let seen = by_name(&[lib.name], lib.symbol).map_err(|_| {
        format!(
            "loaded, but its SONAME is none of the names cudarc searches (e.g. {})",
            lib.wheels[0].1
        )
    })?;
    if same_file(&seen, &loaded) {
        Ok(loaded)
    } else {
        Err(format!(
            "loaded, but cudarc's search by name opens {} first; remove that from \
             LD_LIBRARY_PATH{}",
            seen.display(),
            if lib.name == NVRTC.name {
                format!(" or point {NVRTC_ENV} at it")
            } else {
                String::new()
            }
        ))
    }
}

/// NVRTC opens `libnvrtc-builtins.so.<major>.<minor>` by name when it compiles; a wheel's copy
/// sits beside it where the linker does not look. Loading it by path now lets that name
/// resolve (same SONAME rule). Failures are left to NVRTC, whose message names the file.
fn preload_builtins(nvrtc: &Path) {
    let Some(Ok(entries)) = nvrtc.parent().map(std::fs::read_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // `.alt.` is NVIDIA's variant for the alternative NVRTC; ours is the plain one.
        if name.starts_with("libnvrtc-builtins.so.") && !name.contains(".alt.") {
            // SAFETY: NVRTC would load this library itself on its first compile.
            if let Ok(lib) = unsafe { Library::new(entry.path()) } {
                std::mem::forget(lib);
            }
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The file `lib` was loaded from, asked of the linker through one of its symbols.
#[cfg(unix)]
fn file_of(lib: &Library, symbol: &str) -> Option<PathBuf> {
    use std::ffi::{CStr, c_void};
    use std::os::unix::ffi::OsStrExt;

    // SAFETY: the symbol is only used as an address, never called or read.
    let address: *mut c_void = *unsafe { lib.get::<*mut c_void>(symbol) }.ok()?;
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only writes `info`; `address` lies in a library that is loaded.
    if unsafe { libc::dladdr(address, info.as_mut_ptr()) } == 0 {
        return None;
    }
    // SAFETY: dladdr succeeded, so `info` is initialised.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated string owned by the linker, valid while the library is loaded.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(OsStr::from_bytes(name.to_bytes())))
}

#[cfg(not(unix))]
fn file_of(_lib: &Library, _symbol: &str) -> Option<PathBuf> {
    // Without dladdr the caller reports the name it opened.
    None
}

/// Where `lib` lives when the linker does not know it, best first: `$CUDA_HOME`/`$CUDA_PATH`,
/// pip wheels (`nvidia/cu13/lib`, then CUDA 12's folder) in virtual
/// environments (`$VIRTUAL_ENV`, `$CONDA_PREFIX`, `bench/.venv*`), user and system
/// site-packages (including pyenv's), then `/usr/local/cuda*`. CUDA 13 before CUDA 12
/// everywhere: the bindings are 13.0's.
pub(crate) fn search_files(lib: &Lib) -> Vec<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = var("HOME");
    let mut toolkits: Vec<PathBuf> = Vec::new();
    toolkits.extend(var("CUDA_HOME").map(|p| p.join("lib64")));
    toolkits.extend(var("CUDA_PATH").map(|p| p.join("lib64")));
    let mut sites: Vec<PathBuf> = Vec::new();
    let mut prefixes: Vec<PathBuf> = Vec::new();
    prefixes.extend(var("VIRTUAL_ENV"));
    prefixes.extend(var("CONDA_PREFIX"));
    if let Ok(cwd) = std::env::current_dir() {
        prefixes.extend(expand(&cwd.join("bench/.venv*")));
    }
    // The checkout this crate was built from: lets `cargo test` find the bench venv from any
    // working directory. Harmless where that folder does not exist.
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    prefixes.extend(expand(&checkout.join("bench/.venv*")));
    prefixes.push(PathBuf::from("/opt/conda"));
    for prefix in &prefixes {
        sites.extend(expand(&prefix.join("lib/python3*/site-packages")));
    }
    if let Some(home) = &home {
        sites.extend(expand(&home.join(".local/lib/python3*/site-packages")));
        sites.extend(expand(
            &home.join(".pyenv/versions/*/lib/python3*/site-packages"),
        ));
    }
    for pattern in [
        "/usr/local/lib/python3*/dist-packages",
        "/usr/local/lib/python3*/site-packages",
        "/usr/lib/python3/dist-packages",
        "/usr/lib/python3*/site-packages",
    ] {
        sites.extend(expand(Path::new(pattern)));
    }
    let mut system_toolkits = vec![PathBuf::from("/usr/local/cuda/lib64")];
    system_toolkits.extend(expand(Path::new("/usr/local/cuda-1*/lib64")));

    let mut files = Vec::new();
    for &(wheel, soname) in lib.wheels {
        files.extend(toolkits.iter().map(|t| t.join(soname)));
        files.extend(sites.iter().map(|s| s.join(wheel).join(soname)));
        files.extend(system_toolkits.iter().map(|t| t.join(soname)));
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.clone()));
    files
}

/// `path` with each component holding one `*` matched against the folder's entries (newest
/// name first, so python3.12 before python3.11).
fn expand(path: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for part in path.components() {
        let part = part.as_os_str().to_string_lossy();
        let Some((prefix, suffix)) = part.split_once('*') else {
            found.iter_mut().for_each(|p| p.push(&*part));
            continue;
        };
        let mut next = Vec::new();
        for dir in &found {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.len() >= prefix.len() + suffix.len())
                .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
                .collect();
            names.sort_by(|a, b| b.cmp(a));
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    found.retain(|p| p.exists());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's error must say which library is missing, so a user knows what to install.
    #[test]
    fn a_library_no_name_opens_is_an_error_naming_it() {
        let err = by_name(&["mindscan-no-such-lib"], "f").unwrap_err();
        assert!(err.contains("libmindscan-no-such-lib.so, "), "{err}");
        // The linker's own reason, not libloading's bare "dlopen failed".
        assert!(err.contains("cannot open shared object file"), "{err}");
        assert!(err.contains("LD_LIBRARY_PATH"), "{err}");
    }

    #[test]
    fn an_explicit_nvrtc_path_that_does_not_load_is_an_error_naming_the_variable_and_path() {
        let err = nvrtc(Some(OsStr::new("/nonexistent/libnvrtc.so.13")), &[]).unwrap_err();
        assert!(err.contains(NVRTC_ENV), "{err}");
        assert!(err.contains("/nonexistent/libnvrtc.so.13"), "{err}");
    }

    #[test]
    fn an_explicit_nvrtc_path_must_be_absolute() {
        let err = nvrtc(Some(OsStr::new("libnvrtc.so.13")), &[]).unwrap_err();
        assert!(err.contains("absolute"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_nvrtc_is_refused() {
        // libc is loaded in every process and exports no nvrtcVersion.
        let libc = by_name(&["c"], "malloc").ok().filter(|p| p.is_absolute());
        let Some(libc) = libc else { return };
        let err = nvrtc(Some(libc.as_os_str()), &[]).unwrap_err();
        assert!(err.contains("not NVRTC"), "{err}");
    }

    #[test]
    fn a_found_file_that_is_not_the_library_is_reported_as_refused() {
        let libm = by_name(&["m"], "cos").ok().filter(|p| p.is_absolute());
        let Some(libm) = libm else { return };
        if by_name(&[CUFFT.name], CUFFT.symbol).is_ok() {
            return; // the linker finds the real one first
        }
        let err = find(&CUFFT, std::slice::from_ref(&libm)).unwrap_err();
        assert!(err.starts_with("cuFFT not found: "), "{err}");
        assert!(
            err.contains(&format!("refused {}", libm.display())),
            "{err}"
        );
        assert!(err.contains("not cuFFT"), "{err}");
        assert!(err.contains("pip install nvidia-cufft"), "{err}");
    }

    #[test]
    fn wheel_paths_put_cuda_13_before_cuda_12() {
        let files = search_files(&NVRTC);
        let first12 = files.iter().position(|f| f.ends_with("libnvrtc.so.12"));
        let last13 = files.iter().rposition(|f| f.ends_with("libnvrtc.so.13"));
        if let (Some(a), Some(b)) = (first12, last13) {
            assert!(b < a, "{files:?}");
        }
    }

    #[test]
    fn a_star_matches_entries_of_its_folder_only() {
        let dir = std::env::temp_dir().join(format!("mindscan-cuda-expand-{}", std::process::id()));
        for sub in [
            "python3.11/site-packages",
            "python3.12/site-packages",
            "other",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let found = expand(&dir.join("python3*/site-packages"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found,
            [
                dir.join("python3.12/site-packages"),
                dir.join("python3.11/site-packages")
            ]
        );
    }
}
