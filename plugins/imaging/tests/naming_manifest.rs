//! File-name templates, manifest writing and atomic writes.

use std::path::Path;

use mindscan_plugin_imaging::core::fsio::write_atomic;
use mindscan_plugin_imaging::core::manifest::{
    COLUMNS, ManifestFormat, ManifestRow, ManifestWriter, relative_path,
};
use mindscan_plugin_imaging::core::naming::{NameFields, NameTemplate, NamingError, file_stem};

fn fields<'a>(stem: &'a str) -> NameFields<'a> {
    NameFields {
        stem,
        plane: "axial",
        index: 7,
        frame: Some(3),
        ext: "png",
        series: Some("T1w"),
        key: None,
    }
}

#[test]
fn template_rendering() {
    let t =
        NameTemplate::parse("{stem}/{plane}/{stem}_{plane}_{index:03}_t{frame:02}.{ext}").unwrap();
    assert_eq!(
        t.render(&fields("sub-01")).unwrap(),
        "sub-01/axial/sub-01_axial_007_t03.png"
    );
    let t = NameTemplate::parse("{series}-{index}{{x}}.{ext}").unwrap();
    let mut f = fields("a");
    f.ext = ".jpg";
    assert_eq!(t.render(&f).unwrap(), "T1w-7{x}.jpg");
    let t = NameTemplate::parse("{key}/{frame}_{index:5}.png").unwrap();
    let mut f = fields("a");
    f.frame = None;
    // Empty {key} folder disappears, missing frame renders as 0.
    assert_eq!(t.render(&f).unwrap(), "0_00007.png");
}

#[test]
fn template_errors() {
    match NameTemplate::parse("{stem}_{slice}.png") {
        Err(e @ NamingError::UnknownToken { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("{slice}") && msg.contains("{index}") && msg.contains("{series}"),
                "{msg}"
            );
        }
        other => panic!("expected unknown token, got {other:?}"),
    }
    for bad in [
        "",
        "/abs/{index}.png",
        "../{index}.png",
        "a/./b.png",
        "{index",
        "a}b",
        "{stem:03}",
        "{index:x}",
        "a\\b",
        "a\nb",
    ] {
        assert!(
            NameTemplate::parse(bad).is_err(),
            "{bad:?} should be rejected"
        );
    }
    let t = NameTemplate::parse("{series}/").unwrap();
    assert!(t.render(&fields("x")).is_err(), "empty file name");
    let t = NameTemplate::parse("..{key}/x.png").unwrap();
    assert!(t.render(&fields("x")).is_err(), "'..' from an empty token");
}

#[test]
fn token_values_are_sanitised() {
    let t = NameTemplate::parse("{stem}_{index}.png").unwrap();
    let out = t.render(&fields("../../etc/passwd")).unwrap();
    assert!(!out.contains('/'), "{out}");
    assert_eq!(out, "____etc_passwd_7.png");
    assert_eq!(t.render(&fields("..")).unwrap(), "__7.png");
    assert_eq!(
        t.render(&fields("a\\b\u{0}c\td:e")).unwrap(),
        "a_b_c_d_e_7.png"
    );
    let long = "x".repeat(1000);
    let out = t.render(&fields(&long)).unwrap();
    assert!(out.len() <= 255, "{}", out.len());
    let t = NameTemplate::parse("{stem}").unwrap();
    let multibyte = "é".repeat(200);
    let out = t.render(&fields(&multibyte)).unwrap();
    assert!(out.len() <= 120 && out.chars().all(|c| c == 'é'));
}

/// An input named `.nii.gz` (stem `.nii`) or `..\..\NAME` used to give the dot-folders
/// `out/.nii/` and `.._.._NAME/`.
#[test]
fn no_input_name_gives_a_hidden_or_parent_folder() {
    let t = NameTemplate::parse("{stem}/{plane}_{index:03}.{ext}").unwrap();
    for stem in [
        ".nii",
        ".nii.gz",
        "..\\..\\NAME",
        "..",
        ".",
        "...hidden",
        " .x",
    ] {
        let out = t.render(&fields(stem)).unwrap();
        for c in out.split('/') {
            assert!(
                !c.starts_with('.') && !c.contains(".."),
                "{stem:?} -> {out}"
            );
        }
        assert!(!out.contains('\\'), "{stem:?} -> {out}");
    }
    assert_eq!(t.render(&fields(".nii")).unwrap(), "_nii/axial_007.png");
    // A dot from the template's own text is refused rather than written as a hidden file.
    let t = NameTemplate::parse("{key}.{ext}").unwrap();
    assert!(t.render(&fields("x")).is_err());
}

#[test]
fn stems() {
    assert_eq!(file_stem("/data/sub-01_T1w.nii.gz"), "sub-01_T1w");
    assert_eq!(file_stem("scan.NII"), "scan");
    assert_eq!(file_stem("C:\\dicom\\IM0001.dcm"), "IM0001");
    assert_eq!(file_stem("archive.tar.gz"), "archive.tar.gz");
    assert_eq!(file_stem(".nii"), ".nii");
}

fn row(i: usize) -> ManifestRow {
    ManifestRow {
        path: format!("sub \"01\"/axial,{i:03}.png"),
        source: "/in/sub-01, T1w.nii.gz".into(),
        plane: "axial".into(),
        index: i,
        frame: i.is_multiple_of(2).then_some(i / 2),
        rows: 233,
        cols: 197,
        spacing_row: 1.0,
        spacing_col: 0.5 + i as f64 / 3.0,
        window_lo: -12.5,
        window_hi: 1e6 + 0.25,
        seed: (i == 1).then_some(42),
        volume: format!("vol,{i}"),
        augment: (i == 2).then(
            || serde_json::json!({"seed": 5, "transforms": [{"transform": "gamma", "gamma": 0.9}]}),
        ),
        diffusion: (i == 0).then(|| serde_json::json!({"seed": 9, "sampler": "ddim", "steps": 50})),
    }
}

/// Minimal RFC 4180 parser for checking the writer's quoting.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => row.push(std::mem::take(&mut field)),
                '\n' => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                _ => field.push(c),
            }
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "file must end with a newline"
    );
    rows
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn csv_manifest_parses_back() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("out/manifest.csv");
    let mut w = ManifestWriter::create(&path, ManifestFormat::Csv).unwrap();
    assert!(!path.exists(), "final name appears only on finish");
    for i in 0..5 {
        w.append(&row(i)).unwrap();
    }
    assert_eq!(w.rows_written(), 5);
    assert_eq!(w.dir(), tmp.path().join("out"));
    let done = w.finish().unwrap();
    assert_eq!(done, path);
    assert_eq!(dir_entries(&tmp.path().join("out")), vec!["manifest.csv"]);
    let rows = parse_csv(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(rows.len(), 6);
    assert_eq!(
        rows[0],
        COLUMNS.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    for (i, r) in rows[1..].iter().enumerate() {
        let e = row(i);
        assert_eq!(r.len(), 15);
        assert_eq!(r[0], e.path);
        assert_eq!(r[1], e.source);
        assert_eq!(r[3].parse::<usize>().unwrap(), i);
        assert_eq!(r[4], e.frame.map(|f| f.to_string()).unwrap_or_default());
        assert_eq!(r[9].parse::<f64>().unwrap(), -12.5);
        assert_eq!(
            r[8].parse::<f64>().unwrap(),
            e.spacing_col,
            "floats round-trip"
        );
        assert_eq!(r[10].parse::<f64>().unwrap(), e.window_hi);
        assert_eq!(r[11], if i == 1 { "42" } else { "" });
        assert_eq!(r[12], e.volume);
        let augment = e.augment.map(|a| a.to_string()).unwrap_or_default();
        assert_eq!(r[13], augment, "the augment record is one JSON field");
        let diffusion = e.diffusion.map(|d| d.to_string()).unwrap_or_default();
        assert_eq!(r[14], diffusion, "the diffusion record is one JSON field");
    }
}

#[test]
fn jsonl_manifest_parses_back() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("manifest.jsonl");
    assert_eq!(
        ManifestFormat::from_path(&path),
        Some(ManifestFormat::Jsonl)
    );
    let mut w = ManifestWriter::create(&path, ManifestFormat::Jsonl).unwrap();
    for i in 0..4 {
        w.append(&row(i)).unwrap();
    }
    w.finish().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    for (i, l) in lines.iter().enumerate() {
        let e = row(i);
        let mut back: ManifestRow = serde_json::from_str(l).unwrap();
        // serde_json's default float parser may be off by one ulp; the text itself
        // is Rust's shortest round-trip representation (exact for Python's json).
        assert!((back.spacing_col - e.spacing_col).abs() <= 2.0 * f64::EPSILON * e.spacing_col);
        assert!(
            l.contains(&format!("\"spacing_col\":{:?}", e.spacing_col)),
            "{l}"
        );
        back.spacing_col = e.spacing_col;
        assert_eq!(back, e);
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys.len(), COLUMNS.len());
        for c in COLUMNS {
            assert!(v.get(c).is_some(), "missing {c}");
        }
    }
}

#[test]
fn unfinished_manifest_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut w = ManifestWriter::create(&tmp.path().join("m.csv"), ManifestFormat::Csv).unwrap();
        w.append(&row(0)).unwrap();
        assert_eq!(
            dir_entries(tmp.path()).len(),
            1,
            "temporary file while writing"
        );
        assert!(dir_entries(tmp.path())[0].starts_with(".m.csv.tmp-"));
    }
    assert!(dir_entries(tmp.path()).is_empty());
}

#[test]
fn relative_paths() {
    let d = Path::new("/out/ds");
    assert_eq!(
        relative_path(d, Path::new("/out/ds/a/b.png")).as_deref(),
        Some("a/b.png")
    );
    assert_eq!(relative_path(d, Path::new("/other/b.png")), None);
}

#[test]
fn atomic_write_creates_dirs_and_leaves_no_temp() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("a/b/c.png");
    write_atomic(&p, b"hello").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"hello");
    write_atomic(&p, b"world!").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"world!");
    assert_eq!(dir_entries(&tmp.path().join("a/b")), vec!["c.png"]);
    // Failure (target is a directory) cleans up its temporary file.
    let dir_target = tmp.path().join("a/b");
    assert!(write_atomic(&dir_target, b"x").is_err());
    assert_eq!(dir_entries(&tmp.path().join("a")), vec!["b"]);
}
