//! Discovery apart from decoding: `dicom.scan` / `nifti.scan` → `volume.load` writes exactly
//! what `dicom.read` / `nifti.read` write, and also when sharded.

use std::collections::BTreeMap;
use std::path::Path;

use mindscan_e2e::{data, mindscan, output};

fn q(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).unwrap()
}

/// The shared DICOM series and three NIfTI files to NIfTI volumes and JPG slices, read either
/// with the one-stage readers or with scan + `volume.load`.
fn pipeline(out: &Path, split: bool) -> String {
    let (dicom, nifti, load) = if split {
        (
            "dicom.scan",
            "nifti.scan",
            "  - id: load\n    use: volume.load\n    inputs: [dicom, nifti]\n",
        )
    } else {
        ("dicom.read", "nifti.read", "")
    };
    let decoded = if split { "[load]" } else { "[dicom, nifti]" };
    format!(
        "pipeline: references\nstages:\n  - id: dicom\n    use: {dicom}\n    params:\n      paths: [{d}]\n  - id: nifti\n    use: {nifti}\n    params:\n      paths: [{n1}, {n2}, {n3}]\n{load}  - id: volumes\n    use: nifti.write\n    inputs: {decoded}\n    params:\n      out: {vol}\n      format: nii.gz\n  - id: window\n    use: intensity.window\n    inputs: {decoded}\n  - id: slice\n    use: volume.slice\n    inputs: [window]\n    params:\n      plane: axial\n  - id: images\n    use: image.write\n    inputs: [slice]\n    params:\n      out: {img}\n      format: png\n      manifest: csv\n",
        d = q(&data("dicom/series")),
        n1 = q(&data("nifti/anatomical.nii")),
        n2 = q(&data("nifti/functional.nii")),
        n3 = q(&data("nifti/standard.nii.gz")),
        vol = q(&out.join("volumes")),
        img = q(&out.join("images")),
    )
}

fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    mindscan_e2e::files_with_bytes(dir, |f| !f.ends_with(".yaml"))
}

fn run(dir: &Path, split: bool, shard: Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, pipeline(dir, split)).unwrap();
    let mut cmd = mindscan();
    cmd.args(["run", "--no-progress"]).arg(&file);
    if let Some(s) = shard {
        cmd.args(["--shard", s]);
    }
    let (code, _, stderr) = output(&mut cmd);
    assert_eq!(code, Some(0), "{stderr}");
}

/// Sorted manifest rows, header first: shards finish in any order.
fn rows(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let head = lines.remove(0);
    lines.sort();
    lines.insert(0, head);
    lines
}

#[test]
fn scan_and_load_write_the_bytes_the_one_stage_readers_write() {
    let tmp = tempfile::tempdir().unwrap();
    let direct = tmp.path().join("direct");
    let split = tmp.path().join("split");
    run(&direct, false, None);
    run(&split, true, None);
    let a = contents(&direct);
    let b = contents(&split);
    assert!(
        a.keys().filter(|f| f.ends_with(".nii.gz")).count() >= 9,
        "{:?}",
        a.keys()
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (f, bytes) in &a {
        if f.ends_with(".csv") {
            // Rows name the pipeline's files, which live in different folders.
            let strip = |x: &[u8], dir: &Path| {
                String::from_utf8(x.to_vec())
                    .unwrap()
                    .replace(&dir.display().to_string(), "")
            };
            // Row order is the order items finished in, which two workers do not fix.
            assert_eq!(
                rows(strip(bytes, &direct).as_bytes()),
                rows(strip(&b[f], &split).as_bytes()),
                "{f}"
            );
        } else {
            assert!(bytes == &b[f], "{f} differs");
        }
    }
}

#[test]
fn sharded_scans_split_the_references_and_give_the_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("single");
    let sharded = tmp.path().join("sharded");
    run(&single, true, None);
    for i in 0..2 {
        run(&sharded, true, Some(&format!("{i}/2")));
    }
    let a = contents(&single);
    let b = contents(&sharded);
    let volumes = |m: &BTreeMap<String, Vec<u8>>| {
        m.iter()
            .filter(|(f, _)| f.starts_with("volumes/"))
            .map(|(f, b)| (f.clone(), b.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(volumes(&a), volumes(&b));
    let parts: Vec<&String> = b
        .keys()
        .filter(|f| f.starts_with("images/") && f.ends_with(".csv"))
        .collect();
    assert_eq!(parts.len(), 2, "one manifest part per shard: {parts:?}");
    let images = |m: &BTreeMap<String, Vec<u8>>| {
        m.keys()
            .filter(|f| f.ends_with(".png"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(images(&a), images(&b));
    let mut merged: Vec<String> = Vec::new();
    for p in &parts {
        let r = rows(&b[*p]);
        if merged.is_empty() {
            merged.push(r[0].clone());
        }
        merged.extend(r.into_iter().skip(1));
    }
    let single_rows = rows(a.iter().find(|(f, _)| f.ends_with(".csv")).unwrap().1);
    let head = merged.remove(0);
    merged.sort();
    merged.insert(0, head);
    let strip = |v: Vec<String>, dir: &Path| {
        v.into_iter()
            .map(|l| l.replace(&dir.display().to_string(), ""))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(merged, &sharded), strip(single_rows, &single));
}
