//! How the engine behaves around its plugins, driven through the real binary with the `faulty`
//! test plugin: backpressure, error policies (skip / fail / dead letter, panics included), ABI
//! checks when loading libraries, graceful stop on SIGINT/SIGTERM, deterministic seeds and the
//! metrics file.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mindscan_e2e::{cdylib, data, faulty_plugin, list_files, mindscan, output};
use serde_json::Value;

/// A path as a YAML (JSON-style) quoted string.
fn q(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).unwrap()
}

/// Writes `pipeline.yaml` in `dir`, loading the faulty plugin, with the given stages.
fn faulty_pipeline(dir: &Path, header: &str, stages: &str) -> PathBuf {
    let path = dir.join("pipeline.yaml");
    let text = format!(
        "pipeline: behaviour\nplugins: [{}]\n{header}stages:\n{stages}",
        q(&faulty_plugin())
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The metrics entry of stage `id`.
fn stage<'a>(metrics: &'a Value, id: &str) -> &'a Value {
    metrics["stages"]
        .as_array()
        .expect("stages array")
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no stage {id} in {metrics}"))
}

fn keys(report: &Value) -> Vec<String> {
    report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn backpressure_bounds_memory_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let n = 1500u64;
    let p = faulty_pipeline(
        dir.path(),
        "",
        &format!(
            "  - id: src\n    use: test.source\n    params: {{count: {n}, mib: 1}}\n\
             \x20 - id: sink\n    use: test.slow_sink\n    inputs: [src]\n    queue: 2\n\
             \x20   params: {{delay_ms: 1, report: {}}}\n",
            q(&report)
        ),
    );
    let (code, _, stderr) = output(mindscan().args(["-q", "run"]).arg(&p));
    assert_eq!(code, Some(0), "{stderr}");
    let r = read_json(&report);
    assert_eq!(r["items"], n, "every item arrives");
    assert_eq!(r["bytes"], n << 20, "1.5 GiB flowed through the sink");
    let distinct: BTreeSet<String> = keys(&r).into_iter().collect();
    assert_eq!(distinct.len() as u64, n, "no duplicates");
    let peak_mib = r["peak_rss_kib"].as_u64().expect("VmHWM read") / 1024;
    assert!(
        peak_mib < 300,
        "peak RSS {peak_mib} MiB while {} MiB flowed: the queues do not bound memory",
        n
    );
}

/// A source's slot is freed when the voxels it read are released, not when the last slice of
/// them is written: with `max_in_flight: 1` the source emits the next volume while the slices of
/// the previous one still wait for the slow sink, yet never holds two volumes at once.
#[test]
fn a_slot_frees_when_the_volume_is_released_not_when_its_slices_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let (live, report) = (dir.path().join("live.json"), dir.path().join("sink.json"));
    let p = faulty_pipeline(
        dir.path(),
        "",
        &format!(
            "  - id: src\n    use: test.source\n    max_in_flight: 1\n\
             \x20   params: {{count: 6, mib: 1, live_report: {}}}\n\
             \x20 - id: slice\n    use: volume.slice\n    inputs: [src]\n\
             \x20 - id: sink\n    use: test.slow_sink\n    inputs: [slice]\n    queue: 64\n\
             \x20   params: {{delay_ms: 5, report: {}}}\n",
            q(&live),
            q(&report)
        ),
    );
    let (code, _, stderr) = output(mindscan().args(["-q", "run"]).arg(&p));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(read_json(&report)["items"], 6 * 16, "every slice arrives");
    let live = read_json(&live);
    assert_eq!(live["max_live"], 1, "never two volumes at once: {live}");
    assert!(
        live["max_incomplete"].as_u64().unwrap() >= 1,
        "the next volume waited for the slices of the last one to be written: {live}"
    );
}

fn panic_pipeline(dir: &Path, on_error: &str) -> (PathBuf, PathBuf, PathBuf) {
    let report = dir.join("report.json");
    let dead = dir.join("dead-letter.jsonl");
    let p = faulty_pipeline(
        dir,
        &format!("dead_letter: {}\n", q(&dead)),
        &format!(
            "  - id: src\n    use: test.source\n    params: {{count: 10, mib: 1}}\n\
             \x20 - id: boom\n    use: test.panic\n    inputs: [src]\n    on_error: {on_error}\n\
             \x20   params: {{every: 3}}\n\
             \x20 - id: sink\n    use: test.slow_sink\n    inputs: [boom]\n\
             \x20   params: {{report: {}}}\n",
            q(&report)
        ),
    );
    (p, report, dead)
}

const SURVIVORS: [&str; 6] = [
    "item-00001",
    "item-00002",
    "item-00004",
    "item-00005",
    "item-00007",
    "item-00008",
];

#[test]
fn panicking_plugin_with_skip_counts_errors_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (p, report, dead) = panic_pipeline(dir.path(), "skip");
    let metrics = dir.path().join("metrics.json");
    let (code, _, stderr) = output(
        mindscan()
            .arg("run")
            .arg(&p)
            .arg("--metrics-json")
            .arg(&metrics),
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("4 input(s) failed or were skipped"),
        "{stderr}"
    );
    let m = read_json(&metrics);
    let boom = stage(&m, "boom");
    assert_eq!(boom["errors"], 4, "{m}");
    assert_eq!(boom["items_in"], 10, "{m}");
    assert_eq!(boom["items_out"], 6, "{m}");
    assert_eq!(stage(&m, "sink")["items_in"], 6, "{m}");
    assert_eq!(keys(&read_json(&report)), SURVIVORS);
    assert_eq!(stderr.matches("skipped [").count(), 4, "{stderr}");
    assert!(!dead.exists(), "skip writes no dead-letter records");
    // The summary table on stderr shows the error count on the stage's row.
    let row = stderr
        .lines()
        .find(|l| l.starts_with("boom ") && l.contains("test.panic"))
        .unwrap_or_else(|| panic!("no summary row for boom in:\n{stderr}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[5], "4", "errors column of {row}");
}

#[test]
fn panicking_plugin_with_fail_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _, _) = panic_pipeline(dir.path(), "fail");
    let (code, _, stderr) = output(mindscan().arg("run").arg(&p));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("error: run failed: stage 'boom' (test.panic)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("panicked: deliberate panic on item-00000"),
        "{stderr}"
    );
}

#[test]
fn failing_plugin_with_fail_stops_the_run_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let p = faulty_pipeline(
        dir.path(),
        "",
        &format!(
            "  - id: src\n    use: test.source\n    params: {{count: 5, mib: 1}}\n\
             \x20 - id: check\n    use: test.fail\n    inputs: [src]\n    params: {{every: 2}}\n\
             \x20 - id: sink\n    use: test.slow_sink\n    inputs: [check]\n\
             \x20   params: {{report: {}}}\n",
            q(&report)
        ),
    );
    let (code, _, stderr) = output(mindscan().arg("run").arg(&p));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("stage 'check' (test.fail)"), "{stderr}");
    assert!(
        stderr.contains("deliberate failure on item-00000"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "an error is not a panic: {stderr}"
    );
}

#[test]
fn dead_letter_records_every_failed_item() {
    let dir = tempfile::tempdir().unwrap();
    let (p, report, dead) = panic_pipeline(dir.path(), "dead_letter");
    let (code, _, stderr) = output(mindscan().arg("run").arg(&p));
    // The run went on past the failed items, and its status says some failed.
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(keys(&read_json(&report)), SURVIVORS);
    let text = std::fs::read_to_string(&dead).expect("dead-letter file written");
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON record per line"))
        .collect();
    let mut got: Vec<&str> = records.iter().map(|r| r["key"].as_str().unwrap()).collect();
    got.sort();
    assert_eq!(
        got,
        ["item-00000", "item-00003", "item-00006", "item-00009"]
    );
    for r in &records {
        assert_eq!(r["stage"], "boom", "{r}");
        assert_eq!(r["stage_type"], "test.panic", "{r}");
        assert_eq!(r["pipeline"], "behaviour", "{r}");
        let err = r["error"].as_str().unwrap();
        assert!(err.contains("panicked: deliberate panic on"), "{r}");
        assert!(err.contains(r["key"].as_str().unwrap()), "{r}");
        assert_eq!(r["item"]["meta"]["key"], r["key"], "provenance kept: {r}");
    }
}

fn pipeline_loading(dir: &Path, lib: &Path) -> PathBuf {
    let p = dir.join("pipeline.yaml");
    std::fs::write(
        &p,
        format!(
            "pipeline: loading\nplugins: [{}]\nstages:\n  - id: read\n    use: nifti.read\n\
             \x20   params: {{paths: [x]}}\n",
            q(lib)
        ),
    )
    .unwrap();
    p
}

#[test]
fn abi_mismatch_is_refused_with_both_versions() {
    let lib = cdylib(
        "mindscan-test-plugin-abi-mismatch",
        "mindscan_test_abi_mismatch",
    );
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_loading(dir.path(), &lib);
    for cmd in ["validate", "run"] {
        let (code, _, stderr) = output(mindscan().arg(cmd).arg(&p));
        assert_eq!(code, Some(2), "{cmd}: {stderr}");
        assert!(stderr.contains(&lib.display().to_string()), "{stderr}");
        assert!(stderr.contains("ABI version 999"), "{stderr}");
        assert!(
            stderr.contains(&format!("ABI version {}", mindscan_sdk::ABI_VERSION)),
            "{stderr}"
        );
        // The pipeline line that listed it.
        assert!(stderr.contains("pipeline.yaml:2:"), "{stderr}");
    }
    // Also from --plugin-dir.
    let plain = dir.path().join("plain.yaml");
    std::fs::write(
        &plain,
        "pipeline: plain\nstages:\n  - id: read\n    use: nifti.read\n    params: {paths: [x]}\n",
    )
    .unwrap();
    let (code, _, stderr) = output(
        mindscan()
            .arg("--plugin-dir")
            .arg(&lib)
            .arg("validate")
            .arg(&plain),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("999"), "{stderr}");
}

#[test]
fn library_without_entry_symbol_is_refused_clearly() {
    let lib = cdylib("mindscan-test-plugin-no-entry", "mindscan_test_no_entry");
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_loading(dir.path(), &lib);
    let (code, _, stderr) = output(mindscan().arg("validate").arg(&p));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&lib.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("no `mindscan_plugin_entry` symbol"),
        "{stderr}"
    );
    assert!(stderr.contains("not a Mindscan plugin"), "{stderr}");
}

/// Waits for the child, killing it (and failing) if it hangs.
fn wait_or_kill(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mindscan did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn graceful_stop(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("images");
    let p = faulty_pipeline(
        dir.path(),
        "",
        &format!(
            "  - id: src\n    use: test.source\n    params: {{count: 100000, mib: 1, delay_ms: 20}}\n\
             \x20 - id: slice\n    use: volume.slice\n    inputs: [src]\n\
             \x20   params: {{plane: axial, skip_empty: false}}\n\
             \x20 - id: write\n    use: image.write\n    inputs: [slice]\n    workers: 2\n\
             \x20   params: {{out: {}, format: jpg, manifest: csv}}\n",
            q(&out)
        ),
    );
    let log = dir.path().join("stderr.log");
    let mut child = mindscan()
        .args(["run", "--no-progress"])
        .arg(&p)
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Wait for the first images.
    let start = Instant::now();
    while !list_files(&out).iter().any(|f| f.ends_with(".jpg")) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "exited early ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("no output appeared");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let code = wait_or_kill(&mut child, Duration::from_secs(120));
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(130), "{signal}: {stderr}");
    assert!(stderr.contains("stopped: interrupted"), "{stderr}");

    let files = list_files(&out);
    let leftovers: Vec<&String> = files
        .iter()
        .filter(|f| {
            let name = Path::new(f).file_name().unwrap().to_string_lossy();
            name.starts_with('.') && name.contains(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let images: BTreeSet<&str> = files
        .iter()
        .filter(|f| f.ends_with(".jpg"))
        .map(String::as_str)
        .collect();
    assert!(!images.is_empty());
    assert!(images.len() < 100000 * 16, "the run really stopped early");
    let manifest = std::fs::read_to_string(out.join("manifest.csv")).expect("manifest flushed");
    let rows: BTreeSet<&str> = manifest
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        manifest.lines().count() - 1,
        images.len(),
        "one manifest row per image on disk"
    );
    assert_eq!(rows, images, "manifest rows name the images on disk");
}

#[test]
fn sigint_stops_gracefully() {
    graceful_stop("INT");
}

#[test]
fn sigterm_stops_gracefully() {
    graceful_stop("TERM");
}

/// (path, seed) rows of a quickstart-like run with `workers` on the slice and write stages.
fn seeded_rows(workers: u32) -> BTreeSet<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let p = dir.path().join("pipeline.yaml");
    let inputs = [data("nifti/anatomical.nii"), data("nifti/functional.nii")];
    let inputs: Vec<String> = inputs.iter().map(|p| q(p)).collect();
    std::fs::write(
        &p,
        format!(
            "pipeline: seeds\nseed: 1234\nstages:\n\
             \x20 - id: read\n    use: nifti.read\n    params: {{paths: [{}]}}\n\
             \x20 - id: window\n    use: intensity.window\n    inputs: [read]\n\
             \x20 - id: slice\n    use: volume.slice\n    inputs: [window]\n    workers: {workers}\n\
             \x20   params: {{plane: all}}\n\
             \x20 - id: write\n    use: image.write\n    inputs: [slice]\n    workers: {workers}\n\
             \x20   params: {{out: {}, format: png, manifest: csv}}\n",
            inputs.join(", "),
            q(&out)
        ),
    )
    .unwrap();
    let (code, _, stderr) = output(mindscan().args(["-q", "run"]).arg(&p));
    assert_eq!(code, Some(0), "{stderr}");
    let manifest = std::fs::read_to_string(out.join("manifest.csv")).unwrap();
    let mut lines = manifest.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "path");
    let seed = header
        .iter()
        .position(|c| *c == "seed")
        .expect("a seed column");
    lines
        .map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            (cols[0].to_string(), cols[seed].to_string())
        })
        .collect()
}

#[test]
fn seeds_do_not_depend_on_worker_count() {
    let one = seeded_rows(1);
    let three = seeded_rows(3);
    assert!(one.len() > 10, "{one:?}");
    assert!(one.iter().all(|(_, s)| s.parse::<u64>().is_ok()), "{one:?}");
    let distinct: BTreeSet<&String> = one.iter().map(|(_, s)| s).collect();
    assert_eq!(distinct.len(), one.len(), "one seed per image");
    assert_eq!(one, three);
}

#[test]
fn metrics_json_has_per_stage_counts() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let metrics = dir.path().join("m/metrics.json");
    let p = faulty_pipeline(
        dir.path(),
        "",
        &format!(
            "  - id: src\n    use: test.source\n    workers: 2\n    params: {{count: 7, mib: 1}}\n\
             \x20 - id: pass\n    use: test.fail\n    inputs: [src]\n    on_error: skip\n\
             \x20   params: {{every: 1000}}\n\
             \x20 - id: sink\n    use: test.slow_sink\n    inputs: [pass]\n\
             \x20   params: {{report: {}}}\n",
            q(&report)
        ),
    );
    let (code, _, stderr) = output(
        mindscan()
            .args(["-q", "run"])
            .arg(&p)
            .arg("--metrics-json")
            .arg(&metrics),
    );
    assert_eq!(code, Some(3), "one item failed: {stderr}");
    let m = read_json(&metrics);
    assert_eq!(m["pipeline"], "behaviour");
    assert_eq!(m["failed_inputs"][0]["stage"], "pass", "{m}");
    assert_eq!(
        m["failed_inputs"][0]["input"], "synthetic/item-00000",
        "{m}"
    );
    assert_eq!(m["cancelled"], false);
    assert_eq!(m["failure"], Value::Null);
    let src = stage(&m, "src");
    assert_eq!(
        (src["items_in"].as_u64(), src["items_out"].as_u64()),
        (Some(0), Some(7))
    );
    assert_eq!(src["workers"], 2);
    assert_eq!(src["stage"], "test.source");
    // item-00000 is a multiple of 1000.
    let pass = stage(&m, "pass");
    assert_eq!(
        (pass["items_in"].as_u64(), pass["items_out"].as_u64()),
        (Some(7), Some(6))
    );
    assert_eq!(pass["errors"], 1);
    let sink = stage(&m, "sink");
    assert_eq!(
        (sink["items_in"].as_u64(), sink["items_out"].as_u64()),
        (Some(6), Some(0))
    );
    assert_eq!(read_json(&report)["items"], 6);
}
