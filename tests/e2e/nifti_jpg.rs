//! NIfTI -> NIfTI and NIfTI -> JPG/PNG through the real binary on real volumes.

// Voxel and matrix index arithmetic reads best with explicit indices here.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;
use std::path::Path;

use mindscan_e2e::{data, list_files, mindscan, workspace_root};
use mindscan_nifti::{NiftiVolume, VoxelData, read_nifti, write_nifti};
use serde_json::Value;

const FILES: [&str; 6] = [
    "anatomical.nii",
    "example4d.nii.gz",
    "example_nifti2.nii.gz",
    "functional.nii",
    "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "standard.nii.gz",
];

fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("run mindscan");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "mindscan failed: {stderr}");
    stderr
}

fn stem(name: &str) -> &str {
    name.trim_end_matches(".gz").trim_end_matches(".nii")
}

/// Every real file goes read -> write and comes back with nibabel's shape, affine and values.
#[test]
fn nifti_roundtrip_through_the_pipeline_matches_nibabel() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(data("nifti/expected.json")).unwrap())
            .unwrap();
    let out = tempfile::tempdir().unwrap();
    let inputs: Vec<_> = FILES.iter().map(|f| data(&format!("nifti/{f}"))).collect();
    run_ok(
        mindscan()
            .args([
                "-q",
                "convert",
                "--format",
                "nifti",
                "--no-progress",
                "--out",
            ])
            .arg(out.path())
            .args(&inputs),
    );
    let files = expected["files"].as_array().expect("files in fixture");
    for name in FILES {
        let exp = files
            .iter()
            .find(|f| f["file"] == name)
            .unwrap_or_else(|| panic!("{name} in fixture"));
        let back = read_nifti(&out.path().join(format!("{}.nii.gz", stem(name))))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let shape: Vec<usize> =
            serde_json::from_value(exp["shape"].clone()).expect("shape in fixture");
        assert_eq!(back.dims, shape, "{name}: shape");
        let affine: Vec<Vec<f64>> = serde_json::from_value(exp["affine"].clone()).unwrap();
        for r in 0..4 {
            for c in 0..4 {
                assert!(
                    (back.affine[r][c] - affine[r][c]).abs() < 1e-4,
                    "{name}: affine[{r}][{c}] {} vs nibabel {}",
                    back.affine[r][c],
                    affine[r][c]
                );
            }
        }
        let values = back.scaled_f32().expect("real data");
        let sum: f64 = values.iter().map(|&v| v as f64).sum();
        let exp_sum = exp["fdata"]["sum"].as_f64().expect("sum in fixture");
        assert!(
            (sum - exp_sum).abs() <= 1e-4 * exp_sum.abs().max(1.0),
            "{name}: sum {sum} vs nibabel {exp_sum}"
        );
    }
}

/// Reorders a volume's storage: new axis `a` is old axis `perm[a]`, reversed when `flip[a]`;
/// the affine changes so every voxel keeps its world position.
fn reorient(v: &NiftiVolume, perm: [usize; 3], flip: [bool; 3]) -> NiftiVolume {
    let VoxelData::I16(src) = &v.data else {
        panic!("test volume is int16")
    };
    let od = [v.dims[0], v.dims[1], v.dims[2]];
    let nd = [od[perm[0]], od[perm[1]], od[perm[2]]];
    let mut dst = vec![0i16; src.len()];
    for z in 0..nd[2] {
        for y in 0..nd[1] {
            for x in 0..nd[0] {
                let new = [x, y, z];
                let mut old = [0usize; 3];
                for a in 0..3 {
                    old[perm[a]] = if flip[a] { nd[a] - 1 - new[a] } else { new[a] };
                }
                dst[x + nd[0] * (y + nd[1] * z)] = src[old[0] + od[0] * (old[1] + od[1] * old[2])];
            }
        }
    }
    let a = v.affine;
    let mut na = [[0.0; 4]; 4];
    na[3][3] = 1.0;
    for r in 0..3 {
        na[r][3] = a[r][3];
        for c in 0..3 {
            let s = if flip[c] { -1.0 } else { 1.0 };
            na[r][c] = s * a[r][perm[c]];
            if flip[c] {
                na[r][3] += (nd[c] as f64 - 1.0) * a[r][perm[c]];
            }
        }
    }
    NiftiVolume::from_data(nd.to_vec(), VoxelData::I16(dst), na)
}

/// Pictures do not depend on how the volume is stored (LAS, RAS, LPS, PLS, ASR...).
#[test]
fn every_storage_orientation_gives_the_same_pictures() {
    let base = read_nifti(&data("nifti/anatomical.nii")).unwrap(); // stored LAS
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let variants: [(&str, [usize; 3], [bool; 3]); 6] = [
        ("las", [0, 1, 2], [false; 3]),
        ("ras", [0, 1, 2], [true, false, false]),
        ("lps", [0, 1, 2], [false, true, false]),
        ("pls", [1, 0, 2], [true, false, false]),
        ("asr", [1, 2, 0], [false, false, true]),
        ("sil", [2, 1, 0], [false, false, false]),
    ];
    for (name, perm, flip) in variants {
        let v = reorient(&base, perm, flip);
        write_nifti(&inputs.join(format!("{name}.nii.gz")), &v).unwrap();
    }
    let out = dir.path().join("out");
    run_ok(
        mindscan()
            .args([
                "-q",
                "convert",
                "--format",
                "png",
                "--plane",
                "all",
                "--no-progress",
                "--out",
            ])
            .arg(&out)
            .arg(&inputs),
    );
    let pictures = |stem: &str| -> BTreeMap<String, Vec<u8>> {
        list_files(&out.join(stem))
            .into_iter()
            .map(|f| (f.clone(), std::fs::read(out.join(stem).join(f)).unwrap()))
            .collect()
    };
    let reference = pictures("las");
    assert_eq!(
        reference.len(),
        25 + 41 + 33,
        "axial + coronal + sagittal slices of a 33x41x25 volume"
    );
    for (name, _, _) in variants {
        assert_eq!(pictures(name), reference, "{name} differs from las");
    }
}

fn png_gray(path: &Path) -> (usize, usize, Vec<u16>, u8) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    let bits = info.bit_depth as u8;
    let px: Vec<u16> = if bits == 16 {
        buf[..info.buffer_size()]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect()
    } else {
        buf[..info.buffer_size()]
            .iter()
            .map(|&b| b as u16)
            .collect()
    };
    (info.height as usize, info.width as usize, px, bits)
}

/// Display convention on a real brain: the axial picture's top rows are anterior. In the
/// LAS-stored volume, anterior is +j: the top row of an axial slice must be the highest j.
#[test]
fn axial_top_is_anterior_and_left_is_patient_left() {
    let dir = tempfile::tempdir().unwrap();
    // A volume with a bright marker at the patient-left, anterior corner of the middle slice.
    let mut v = read_nifti(&data("nifti/anatomical.nii")).unwrap();
    let VoxelData::I16(d) = &mut v.data else {
        panic!()
    };
    d.iter_mut().for_each(|x| *x = 0);
    let (ni, nj) = (v.dims[0], v.dims[1]);
    let k = v.dims[2] / 2;
    // LAS: i grows toward patient Left, j toward Anterior.
    d[(ni - 1) + ni * ((nj - 1) + nj * k)] = 1000;
    let input = dir.path().join("marker.nii.gz");
    write_nifti(&input, &v).unwrap();
    let out = dir.path().join("out");
    run_ok(
        mindscan()
            .args(["-q", "run", "--no-progress"])
            .arg(workspace_root().join("pipelines/quickstart.yaml"))
            .args(["--set", &format!("read.paths=[{}]", input.display())])
            .args(["--set", &format!("write.out={}", out.display())])
            .args(["--set", "write.format=png", "--set", "slice.plane=axial"])
            .args([
                "--set",
                "slice.skip_empty=false",
                "--set",
                "window.mode=minmax",
            ]),
    );
    let (rows, cols, px, _) = png_gray(&out.join(format!("marker/axial_{k:03}.png")));
    let max_at = px.iter().enumerate().max_by_key(|(_, v)| **v).unwrap().0;
    assert_eq!(
        (max_at / cols, max_at % cols),
        (0, 0),
        "marker at top-left ({rows}x{cols})"
    );
}

/// The quickstart runs as the README says and leaves a consistent dataset behind.
#[test]
fn quickstart_writes_images_manifest_and_contact_sheets() {
    let out = tempfile::tempdir().unwrap();
    run_ok(
        mindscan()
            .current_dir(workspace_root())
            .args(["-q", "run", "--no-progress", "pipelines/quickstart.yaml"])
            .args(["--set", &format!("write.out={}", out.path().display())]),
    );
    let files = list_files(out.path());
    let jpgs: Vec<&String> = files.iter().filter(|f| f.ends_with(".jpg")).collect();
    let csv = std::fs::read_to_string(out.path().join("manifest.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert!(!jpgs.is_empty());
    assert_eq!(rows.len(), jpgs.len(), "one manifest row per image");
    for r in &rows {
        let path = r.split(',').next().unwrap();
        assert!(
            out.path().join(path).is_file(),
            "manifest path {path} exists"
        );
    }
    let jsonl = std::fs::read_to_string(out.path().join("manifest.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), rows.len());
    for stem in ["t1w_brain_nibabel", "mni152_t1_brain"] {
        for plane in ["axial", "coronal", "sagittal"] {
            assert!(
                files.contains(&format!("{stem}_{plane}_sheet.png")),
                "contact sheet {stem} {plane}"
            );
        }
    }
    assert!(
        !files.iter().any(|f| f.contains(".tmp")),
        "no temporary file left: {files:?}"
    );
}

/// med2image's behaviour on request: every slice stretched to its own min-max; 16-bit PNG keeps
/// the full range.
#[test]
fn per_slice_window_and_sixteen_bit_png() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("p.yaml");
    std::fs::write(
        &yaml,
        format!(
            "pipeline: t\nstages:\n  - {{id: read, use: nifti.read, params: {{paths: [{}]}}}}\n  \
             - {{id: win, use: intensity.window, inputs: [read], params: {{mode: slice_minmax}}}}\n  \
             - {{id: cut, use: volume.slice, inputs: [win], params: {{plane: coronal}}}}\n  \
             - {{id: w8, use: image.write, inputs: [cut], params: {{out: {o8}, format: png}}}}\n  \
             - {{id: w16, use: image.write, inputs: [cut], params: {{out: {o16}, format: png, bit_depth: 16}}}}\n",
            data("nifti/anatomical.nii").display(),
            o8 = dir.path().join("o8").display(),
            o16 = dir.path().join("o16").display(),
        ),
    )
    .unwrap();
    run_ok(mindscan().args(["-q", "run", "--no-progress"]).arg(&yaml));
    let pngs: Vec<String> = list_files(&dir.path().join("o8/anatomical"));
    assert_eq!(pngs.len(), 41, "41 coronal slices");
    for f in &pngs {
        let (_, _, px, bits) = png_gray(&dir.path().join("o8/anatomical").join(f));
        assert_eq!(bits, 8);
        let (mn, mx) = (px.iter().min().unwrap(), px.iter().max().unwrap());
        if mn != mx {
            assert_eq!((*mn, *mx), (0, 255), "{f} stretched to its own range");
        }
        let (_, _, px16, bits16) = png_gray(&dir.path().join("o16/anatomical").join(f));
        assert_eq!(bits16, 16);
        if mn != mx {
            assert_eq!(*px16.iter().max().unwrap(), 65535, "{f} 16-bit range");
        }
    }
}

/// A corrupt file in a folder: with on_error: dead_letter the rest is converted and the record
/// names the file and the reason.
#[test]
fn corrupt_file_is_dead_lettered_and_the_rest_converted() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::copy(data("nifti/standard.nii.gz"), inputs.join("good.nii.gz")).unwrap();
    let bytes = std::fs::read(data("nifti/example4d.nii.gz")).unwrap();
    std::fs::write(inputs.join("broken.nii.gz"), &bytes[..bytes.len() / 3]).unwrap();
    let yaml = dir.path().join("p.yaml");
    let dl = dir.path().join("dead.jsonl");
    std::fs::write(
        &yaml,
        format!(
            "pipeline: t\ndead_letter: {}\nstages:\n  - {{id: read, use: nifti.read, on_error: dead_letter, params: {{paths: [{}]}}}}\n  \
             - {{id: save, use: nifti.write, inputs: [read], params: {{out: {}}}}}\n",
            dl.display(),
            inputs.display(),
            dir.path().join("out").display()
        ),
    )
    .unwrap();
    let out = mindscan()
        .args(["run", "--no-progress"])
        .arg(&yaml)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "some inputs failed: {stderr}");
    let summary = stderr.split("failed or were skipped:").nth(1).unwrap_or("");
    assert!(
        summary.contains("broken.nii.gz"),
        "the closing summary names the file: {stderr}"
    );
    assert!(dir.path().join("out/good.nii.gz").is_file());
    assert!(!dir.path().join("out/broken.nii.gz").exists());
    let record: Value = serde_json::from_str(
        std::fs::read_to_string(&dl)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record["stage"], "read");
    assert!(
        record["source"]
            .as_str()
            .unwrap()
            .ends_with("broken.nii.gz")
    );
    assert!(
        record["error"].as_str().unwrap().contains("truncated"),
        "reason: {record}"
    );
}

/// `mindscan --version` names the JPEG encoder of the build under test (CI runs this file
/// again against a `--features turbojpeg` build through MINDSCAN_E2E_FEATURES).
#[test]
fn version_names_the_jpeg_encoder() {
    let out = mindscan().arg("--version").output().expect("run mindscan");
    assert!(out.status.success());
    let out = String::from_utf8_lossy(&out.stdout);
    let turbo = mindscan_e2e::e2e_features().is_some_and(|f| f.contains("turbojpeg"));
    let expected = if turbo {
        "libjpeg-turbo"
    } else {
        "jpeg-encoder"
    };
    assert!(
        out.contains(&format!("(JPEG: {expected})")),
        "--version: {out}"
    );
}
