//! `mindscan validate` on the fixture pipelines under tests/fixtures/pipelines, and
//! `mindscan schema`.
//!
//! Every `invalid/*.yaml` starts with comment lines: `# expect: <substring>` (one per expected
//! diagnostic, with its `line:column`) and optionally `# set: STAGE.PARAM=VALUE` (passed as
//! `--set`). Validation must exit 2 and print every expected substring. Every `valid/*.yaml`
//! must validate with exit 0.

use std::path::{Path, PathBuf};

use mindscan_e2e::{mindscan, output, workspace_root};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = workspace_root().join("tests/fixtures/pipelines").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// Values of the leading `# <tag>: ...` comment lines.
fn header(path: &Path, tag: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let prefix = format!("# {tag}:");
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_string())
        .collect()
}

fn validate(path: &Path, sets: &[String]) -> (Option<i32>, String, String) {
    let mut cmd = mindscan();
    // Run from the fixture folder with a relative path, so messages name the file as written.
    cmd.current_dir(path.parent().unwrap())
        .arg("validate")
        .arg(path.file_name().unwrap());
    for s in sets {
        cmd.args(["--set", s]);
    }
    output(&mut cmd)
}

#[test]
fn invalid_fixtures_report_every_expected_error_with_its_position() {
    let mut failures = Vec::new();
    for path in fixtures("invalid") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expects = header(&path, "expect");
        assert!(!expects.is_empty(), "{name}: no `# expect:` lines");
        let (code, stdout, stderr) = validate(&path, &header(&path, "set"));
        if code != Some(2) {
            failures.push(format!(
                "{name}: exit {code:?}, expected 2\n{stdout}{stderr}"
            ));
        }
        for e in &expects {
            if !stderr.contains(e.as_str()) {
                failures.push(format!("{name}: missing `{e}` in:\n{stderr}"));
            }
        }
        // Messages carrying a position name the file first.
        assert!(
            stderr.contains(&name),
            "{name}: file not named in:\n{stderr}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn validate_reports_all_errors_of_a_file_at_once() {
    let path = workspace_root().join("tests/fixtures/pipelines/invalid/many_errors.yaml");
    let (code, _, stderr) = validate(&path, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("many_errors.yaml:") && l.contains(": error: "))
        .collect();
    assert!(errors.len() >= 5, "expected 5 errors, got:\n{stderr}");
    // Sorted by position.
    let lines: Vec<u32> = errors
        .iter()
        .map(|l| l.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{stderr}");
}

#[test]
fn diagnostics_do_not_cascade() {
    // A duplicate id is not also a self-cycle; a source with inputs is not also a kind error;
    // an unknown stage does not also make the pipeline "sourceless".
    for (file, not_expected) in [
        ("duplicate_id.yaml", "cycle"),
        ("source_with_inputs.yaml", "wrong item kind"),
        ("unknown_stage.yaml", "no source stage"),
    ] {
        let path = workspace_root()
            .join("tests/fixtures/pipelines/invalid")
            .join(file);
        let (code, _, stderr) = validate(&path, &[]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(!stderr.contains(not_expected), "{file}:\n{stderr}");
        assert_eq!(stderr.matches(": error: ").count(), 1, "{file}:\n{stderr}");
    }
}

#[test]
fn valid_fixtures_validate() {
    for path in fixtures("valid") {
        let (code, stdout, stderr) = validate(&path, &[]);
        assert_eq!(code, Some(0), "{}:\n{stdout}{stderr}", path.display());
        assert!(stdout.contains(": ok ("), "{stdout}");
    }
}

#[test]
fn every_shipped_pipeline_validates() {
    let dir = workspace_root().join("pipelines");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let (code, stdout, stderr) = validate(&path, &[]);
            assert_eq!(code, Some(0), "{}:\n{stdout}{stderr}", path.display());
            n += 1;
        }
    }
    assert!(
        n >= 4,
        "pipelines/ has the quickstart, DICOM and watch pipelines"
    );
}

#[test]
fn a_good_set_override_validates_and_a_bad_one_does_not() {
    let path = workspace_root().join("tests/fixtures/pipelines/valid/quickstart_like.yaml");
    let (code, _, stderr) = validate(&path, &["slice.plane=axial".into()]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = validate(&path, &["write.format=gif".into()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--set write.format"), "{stderr}");
    let (code, _, stderr) = validate(&path, &["nope.plane=axial".into()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no stage with id 'nope'"), "{stderr}");
}

#[test]
fn schema_describes_the_stage_config_keys() {
    let (code, stdout, stderr) = output(mindscan().arg("schema"));
    assert_eq!(code, Some(0), "{stderr}");
    let schema: serde_json::Value = serde_json::from_str(&stdout).expect("schema is JSON");
    let top = schema["properties"]
        .as_object()
        .expect("top-level properties");
    for key in ["pipeline", "seed", "plugins", "dead_letter", "stages"] {
        assert!(
            top.contains_key(key),
            "top-level key {key} missing:\n{stdout}"
        );
    }
    // The stage config is a definition referenced from `stages`.
    let defs = schema["$defs"].as_object().expect("$defs");
    let stage = defs
        .values()
        .find(|d| d["properties"].get("use").is_some())
        .expect("a definition with `use`");
    let props = stage["properties"].as_object().unwrap();
    for key in [
        "id", "use", "inputs", "params", "workers", "queue", "on_error",
    ] {
        assert!(
            props.contains_key(key),
            "stage key {key} missing:\n{stdout}"
        );
    }
    assert!(stdout.contains("dead_letter"), "on_error values listed");
    assert_eq!(stage["additionalProperties"], serde_json::json!(false));
}
