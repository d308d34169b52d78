//! Plugins loaded from disk: the first-party `cdylib`s go through the same ABI as the built-in
//! copies (so loading both is a clash), and the example third-party `example.threshold` plugin
//! loads from a pipeline's `plugins:`, `--plugin-dir` and `MINDSCAN_PLUGIN_PATH`, and works.

use std::path::{Path, PathBuf};
use std::process::Command;

use mindscan_e2e::{cdylib, data, mindscan, output, threshold_plugin};
use mindscan_nifti::{NiftiVolume, VoxelData, read_nifti};

fn q(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).unwrap()
}

#[test]
fn first_party_cdylibs_clash_with_the_built_in_copies() {
    for (package, lib) in [
        ("mindscan-plugin-nifti-dylib", "mindscan_nifti"),
        ("mindscan-plugin-imaging-dylib", "mindscan_imaging"),
        ("mindscan-plugin-augment-dylib", "mindscan_augment"),
        ("mindscan-plugin-tensor-dylib", "mindscan_tensor"),
    ] {
        let path = cdylib(package, lib);
        assert!(path.exists(), "{} not built", path.display());
        let (code, _, stderr) = output(mindscan().arg("--plugin-dir").arg(&path).arg("plugins"));
        assert_ne!(code, Some(0), "{stderr}");
        assert!(stderr.contains("provided twice"), "{stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
        // The same clash from a pipeline's `plugins:` list is a validation error.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yaml");
        std::fs::write(
            &p,
            format!(
                "pipeline: twice\nplugins: [{}]\nstages:\n  - id: read\n    use: nifti.read\n\
                 \x20   params: {{paths: [x]}}\n",
                q(&path)
            ),
        )
        .unwrap();
        let (code, _, stderr) = output(mindscan().arg("validate").arg(&p));
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("provided twice"), "{stderr}");
    }
}

/// A folder holding only the threshold plugin (target/ has other, broken test plugins).
fn plugin_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let lib = threshold_plugin();
    std::fs::copy(&lib, dir.path().join(lib.file_name().unwrap())).unwrap();
    dir
}

fn check_description(cmd: &mut Command) {
    let (code, stdout, stderr) = output(cmd.args(["plugins", "example.threshold"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("example.threshold"), "{stdout}");
    assert!(stdout.contains("role: transform"), "{stdout}");
    assert!(stdout.contains("level: number (required)"), "{stdout}");
    assert!(stdout.contains("replace: number (default 0.0)"), "{stdout}");
    assert!(stdout.contains("plugin: example-threshold"), "{stdout}");
}

#[test]
fn threshold_plugin_is_described_from_plugin_dir_and_env() {
    let folder = plugin_folder();
    check_description(mindscan().arg("--plugin-dir").arg(folder.path()));
    check_description(mindscan().arg("--plugin-dir").arg(threshold_plugin()));
    check_description(mindscan().env("MINDSCAN_PLUGIN_PATH", folder.path()));
    // Without it, the stage is unknown.
    let (code, _, stderr) = output(mindscan().args(["plugins", "example.threshold"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown stage 'example.threshold'"),
        "{stderr}"
    );
}

/// Voxel values as f32, scaled if the file says so.
fn values(v: &NiftiVolume) -> Vec<f32> {
    v.scaled_f32()
        .filter(|_| v.has_scaling())
        .unwrap_or_else(|| {
            (0..v.data.len())
                .map(|i| v.data.get_f64(i).unwrap() as f32)
                .collect()
        })
}

const LEVEL: f32 = 900.0;
const REPLACE: f32 = -7.5;

/// Runs nifti.read → example.threshold → nifti.write and returns the output folder.
fn run_threshold(dir: &Path, plugins_line: &str, cmd: &mut Command) -> PathBuf {
    let out = dir.join("out");
    let p = dir.join("pipeline.yaml");
    std::fs::write(
        &p,
        format!(
            "pipeline: threshold\n{plugins_line}stages:\n\
             \x20 - id: read\n    use: nifti.read\n    params: {{paths: [{}]}}\n\
             \x20 - id: cut\n    use: example.threshold\n    inputs: [read]\n\
             \x20   params: {{level: {LEVEL}, replace: {REPLACE}}}\n\
             \x20 - id: write\n    use: nifti.write\n    inputs: [cut]\n\
             \x20   params: {{out: {}}}\n",
            q(&data("nifti/anatomical.nii")),
            q(&out)
        ),
    )
    .unwrap();
    let (code, _, stderr) = output(cmd.args(["-q", "run"]).arg(&p));
    assert_eq!(code, Some(0), "{stderr}");
    out
}

fn check_thresholded(out: &Path) {
    let input = read_nifti(&data("nifti/anatomical.nii")).unwrap();
    let result = read_nifti(&out.join("anatomical.nii.gz")).unwrap();
    assert_eq!(result.dims, input.dims);
    assert_eq!(result.affine, input.affine);
    let VoxelData::F32(got) = &result.data else {
        panic!(
            "threshold output is float32, got {}",
            result.data.type_name()
        );
    };
    let original = values(&input);
    assert_eq!(got.len(), original.len());
    let mut replaced = 0;
    for (i, (&g, &o)) in got.iter().zip(&original).enumerate() {
        let want = if o < LEVEL { REPLACE } else { o };
        assert_eq!(g, want, "voxel {i}: input {o}");
        replaced += usize::from(o < LEVEL);
    }
    assert!(
        replaced > 0 && replaced < got.len(),
        "level {LEVEL} splits the volume"
    );
}

#[test]
fn threshold_plugin_from_pipeline_plugins_list() {
    let dir = tempfile::tempdir().unwrap();
    let line = format!("plugins: [{}]\n", q(&threshold_plugin()));
    let out = run_threshold(dir.path(), &line, &mut mindscan());
    check_thresholded(&out);
}

#[test]
fn threshold_plugin_from_plugin_dir() {
    let dir = tempfile::tempdir().unwrap();
    let folder = plugin_folder();
    let out = run_threshold(
        dir.path(),
        "",
        mindscan().arg("--plugin-dir").arg(folder.path()),
    );
    check_thresholded(&out);
}

#[test]
fn threshold_plugin_from_env() {
    let dir = tempfile::tempdir().unwrap();
    let folder = plugin_folder();
    let out = run_threshold(
        dir.path(),
        "",
        mindscan().env("MINDSCAN_PLUGIN_PATH", folder.path()),
    );
    check_thresholded(&out);
}

#[test]
fn threshold_plugin_params_are_checked_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "pipeline: t\nplugins: [{}]\nstages:\n\
             \x20 - id: read\n    use: nifti.read\n    params: {{paths: [x]}}\n\
             \x20 - id: cut\n    use: example.threshold\n    inputs: [read]\n\
             \x20   params: {{levle: 3}}\n",
            q(&threshold_plugin())
        ),
    )
    .unwrap();
    let (code, _, stderr) = output(mindscan().arg("validate").arg(&p));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("\"level\" is a required property"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean 'level'?"), "{stderr}");
}
