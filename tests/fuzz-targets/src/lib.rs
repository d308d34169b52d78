//! Fuzz target bodies: each takes arbitrary bytes and must return without panicking, aborting or
//! allocating what the input merely claims. `tests/fuzz` (cargo fuzz, nightly) calls them under
//! libFuzzer; `replay` runs them over the kept corpus on stable, in CI.
//!
//! The readers take paths, as users give them, so each input is written to a file first (in
//! `/dev/shm` when there is one: a page-cache write, not a disk write).

use std::path::PathBuf;

/// The per-process scratch file an input is written to.
fn scratch(name: &str, data: &[u8]) -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("mindscan-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let path = dir.join(name);
    std::fs::write(&path, data).expect("scratch file");
    path
}

/// Memory budget for one volume, as `nifti.read` applies it (`max_bytes`), but smaller, so a
/// claimed size is refused before it is allocated.
const BUDGET: u64 = 64 << 20;

/// The NIfTI header and gzip reader: plain and gzip (the magic decides), header-only and full.
pub fn nifti_read(data: &[u8]) {
    for name in ["in.nii", "in.nii.gz"] {
        let path = scratch(name, data);
        let _ = mindscan_nifti::read_nifti_header(&path);
        let opts = mindscan_nifti::ReadOptions {
            max_bytes: Some(BUDGET),
        };
        if let Ok(v) = mindscan_nifti::read_nifti_with(&path, &opts) {
            // Scaling is where a hostile header's slope meets every voxel.
            let _ = v.scaled_f32();
        }
    }
}

/// The DICOM header scan, then the pixel decode of every series it finds (any transfer syntax
/// the file declares).
pub fn dicom_file(data: &[u8]) {
    let path = scratch("in.dcm", data);
    let rep = mindscan_dicom::scan(std::slice::from_ref(&path));
    for s in &rep.series {
        let _ = mindscan_dicom::load_series(s);
    }
}

/// Pipeline YAML: parse, then validate against the built-in stages (no plugin libraries are
/// loaded from what the file names).
pub fn pipeline_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = mindscan_engine::config::parse(text, "fuzz.yaml") else {
        return;
    };
    let sources = mindscan_engine::commands::PluginSources { dirs: Vec::new() };
    let Ok(registry) = mindscan_engine::commands::registry(&sources, None) else {
        return;
    };
    let _ = mindscan_engine::plan::build(&file, &registry, "fuzz.yaml", None);
}

/// A target body.
pub type Target = fn(&[u8]);

/// Every target, by the name its corpus folder has.
pub const TARGETS: &[(&str, Target)] = &[
    ("nifti_read", nifti_read),
    ("dicom_file", dicom_file),
    ("pipeline_yaml", pipeline_yaml),
];
