//! Hostile or absurd inputs through the real binary: headers that claim far more data than the
//! file holds (memory budget, header-only inspect), voxel sizes that would make giant slices,
//! and stages that run past their time limit.

use std::io::Write;
use std::path::{Path, PathBuf};

use mindscan_e2e::{mindscan, output};

/// Incompressible bytes (xorshift), so their gzip is about as large as they are.
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A hand-written NIfTI-1 header (u8 voxels, 1 mm, no transform codes) claiming `dims`,
/// followed by `data` (however little), gzip-compressed into `dir/name`.
fn lying_nii_gz(dir: &Path, name: &str, dims: [i16; 3], data: &[u8]) -> PathBuf {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    let dim = [3i16, dims[0], dims[1], dims[2], 1, 1, 1, 1];
    for (i, d) in dim.iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&2i16.to_le_bytes()); // datatype uint8
    h[72..74].copy_from_slice(&8i16.to_le_bytes()); // bitpix
    for i in 0..4 {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes()); // vox_offset
    h[344..348].copy_from_slice(b"n+1\0");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&h).unwrap();
    enc.write_all(data).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    path
}

/// `read` (nifti.read, on_error: skip, `read_params` added) -> `save` (nifti.write).
fn read_write_pipeline(dir: &Path, input: &Path, read_params: &str) -> PathBuf {
    let yaml = dir.join("p.yaml");
    std::fs::write(
        &yaml,
        format!(
            "pipeline: t\nstages:\n  - {{id: read, use: nifti.read, on_error: skip, \
             params: {{paths: [{}]{read_params}}}}}\n  \
             - {{id: save, use: nifti.write, inputs: [read], params: {{out: {}}}}}\n",
            serde_json::to_string(&input.display().to_string()).unwrap(),
            serde_json::to_string(&dir.join("out").display().to_string()).unwrap(),
        ),
    )
    .unwrap();
    yaml
}

/// A 2.4 MB .nii.gz claiming 2.5 GiB is within deflate's ratio (it could inflate that far), so
/// only the memory budget stops it: the default 2 GiB refuses it by the header's claim, and the
/// summary names the file, the claim and how to raise `max_bytes`.
#[test]
fn a_decompression_bomb_over_the_default_budget_is_an_item_error_naming_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = lying_nii_gz(
        dir.path(),
        "bomb.nii.gz",
        [1024, 1024, 2560],
        &noise(2_400_000),
    );
    let yaml = read_write_pipeline(dir.path(), &bomb, "");
    let (code, _, stderr) = output(mindscan().args(["run", "--no-progress"]).arg(&yaml));
    assert_eq!(code, Some(4), "nothing went through: {stderr}");
    let claimed = (1024u64 * 1024 * 2560).to_string();
    for needle in [
        "bomb.nii.gz",
        &*claimed,
        "max_bytes",
        "--set read.max_bytes=",
    ] {
        assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `--set read.max_bytes=N` reaches the stage: a 64 KiB volume read fine by default is refused
/// under a 1000-byte budget.
#[test]
fn max_bytes_is_set_per_stage_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let small = lying_nii_gz(
        dir.path(),
        "small.nii.gz",
        [64, 64, 16],
        &noise(64 * 64 * 16),
    );
    let yaml = read_write_pipeline(dir.path(), &small, "");
    let (code, _, stderr) = output(mindscan().args(["run", "--no-progress"]).arg(&yaml));
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = output(
        mindscan()
            .args(["run", "--no-progress", "--set", "read.max_bytes=1000"])
            .arg(&yaml),
    );
    assert_eq!(code, Some(4), "{stderr}");
    for needle in ["small.nii.gz", "65536", "max_bytes = 1000"] {
        assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    }
}

/// `inspect` reads the header only: a file claiming 4 GiB that holds 100 voxels prints its dims.
#[test]
fn inspect_prints_the_header_of_a_huge_truncated_volume() {
    let dir = tempfile::tempdir().unwrap();
    let huge = lying_nii_gz(dir.path(), "huge.nii.gz", [2048, 2048, 1024], &[9; 100]);
    let (code, stdout, stderr) = output(mindscan().arg("inspect").arg(&huge));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("[2048, 2048, 1024]"), "{stdout}");
    assert!(stdout.contains("uint8"), "{stdout}");
}

/// A volume whose affine claims a 1e30 mm voxel beside a sound one, through
/// nifti.read -> volume.slice (on_error: skip) -> image.write: the absurd one is an item error
/// naming its file and the spacing (no capacity-overflow panic), the sound one is written, and
/// the run ends with status 3.
#[test]
fn a_1e30_voxel_size_is_an_item_error_of_volume_slice_not_a_panic() {
    use mindscan_nifti::{NiftiVolume, VoxelData, write_nifti};
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let diag = |x: f64| {
        let mut a = [[0.0; 4]; 4];
        a[0][0] = x;
        a[1][1] = 1.0;
        a[2][2] = 1.0;
        a[3][3] = 1.0;
        a
    };
    let voxels: Vec<u8> = (0..4 * 5 * 6).map(|v| v as u8).collect();
    for (name, size) in [("absurd.nii", 1e30), ("sound.nii", 1.0)] {
        let vol = NiftiVolume::from_data(vec![4, 5, 6], VoxelData::U8(voxels.clone()), diag(size));
        write_nifti(&inputs.join(name), &vol).unwrap();
    }
    let yaml = dir.path().join("p.yaml");
    std::fs::write(
        &yaml,
        format!(
            "pipeline: t\nstages:\n  - {{id: read, use: nifti.read, params: {{paths: [{}]}}}}\n  \
             - {{id: cut, use: volume.slice, inputs: [read], on_error: skip, params: {{plane: all}}}}\n  \
             - {{id: save, use: image.write, inputs: [cut], params: {{out: {}, format: png}}}}\n",
            serde_json::to_string(&inputs.display().to_string()).unwrap(),
            serde_json::to_string(&dir.path().join("out").display().to_string()).unwrap(),
        ),
    )
    .unwrap();
    let (code, _, stderr) = output(mindscan().args(["run", "--no-progress"]).arg(&yaml));
    assert_eq!(code, Some(3), "the sound volume went through: {stderr}");
    assert!(!stderr.contains("panic"), "{stderr}");
    assert!(!stderr.contains("capacity overflow"), "{stderr}");
    for needle in ["absurd.nii", "absurd voxel size", "1.000e30"] {
        assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    }
    assert!(dir.path().join("out/sound").is_dir(), "{stderr}");
}

/// `test.source` (4 items) -> `test.sleep` (items 0 and 2 sleep, `timeout` and `on_error: skip`
/// on it) -> `test.slow_sink`; returns (exit code, stderr, sink report, metrics).
fn sleepy_run(
    sleep_params: &str,
    timeout: &str,
) -> (Option<i32>, String, serde_json::Value, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let q = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap();
    let report = dir.path().join("report.json");
    let metrics = dir.path().join("metrics.json");
    let yaml = dir.path().join("p.yaml");
    std::fs::write(
        &yaml,
        format!(
            "pipeline: t\nplugins: [{}]\nstages:\n  \
             - {{id: src, use: test.source, params: {{count: 4, mib: 1}}}}\n  \
             - {{id: nap, use: test.sleep, inputs: [src], on_error: skip, timeout: {timeout}, \
             params: {{every: 2, {sleep_params}}}}}\n  \
             - {{id: sink, use: test.slow_sink, inputs: [nap], params: {{report: {}}}}}\n",
            q(&mindscan_e2e::faulty_plugin()),
            q(&report),
        ),
    )
    .unwrap();
    let (code, _, stderr) = output(
        mindscan()
            .args(["run", "--no-progress", "--metrics-json"])
            .arg(&metrics)
            .arg(&yaml),
    );
    let read = |p: &Path| {
        serde_json::from_str(
            &std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{e}: {stderr}")),
        )
        .unwrap()
    };
    (code, stderr.clone(), read(&report), read(&metrics))
}

fn errors_of(metrics: &serde_json::Value, id: &str) -> u64 {
    metrics["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .and_then(|s| s["errors"].as_u64())
        .unwrap_or_else(|| panic!("no errors count for {id} in {metrics}"))
}

/// Items that would sleep 10 minutes under `timeout: 1s`: the plugin sees `is_cancelled` turn
/// true for those calls only, each is an error naming the timeout, the others go through, and
/// the run ends with status 3 instead of hanging.
#[test]
fn an_item_past_its_stage_timeout_is_cancelled_and_counted_as_an_error() {
    let (code, stderr, report, metrics) = sleepy_run("ms: 600000", "1s");
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(errors_of(&metrics, "nap"), 2, "{stderr}");
    assert_eq!(
        report["keys"],
        serde_json::json!(["item-00001", "item-00003"])
    );
    for needle in [
        "timed out",
        "timeout of 1s",
        "item-00000 saw is_cancelled turn true",
        "item-00002 saw is_cancelled turn true",
    ] {
        assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    }
}

/// A plugin that never checks cancellation cannot be preempted: its item still counts as timed
/// out when the call returns, and nothing it emits after its time is up goes downstream.
#[test]
fn an_item_that_ignores_cancellation_is_reported_timed_out_when_it_returns() {
    let (code, stderr, report, metrics) = sleepy_run("ms: 1500, check_cancel: false", "200ms");
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(errors_of(&metrics, "nap"), 2, "{stderr}");
    assert_eq!(
        report["keys"],
        serde_json::json!(["item-00001", "item-00003"])
    );
    assert!(stderr.contains("timeout of 200ms"), "{stderr}");
    assert!(!stderr.contains("saw is_cancelled"), "{stderr}");
}
