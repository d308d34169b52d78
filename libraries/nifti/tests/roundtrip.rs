//! read -> write (.nii and .nii.gz) -> read back, plus nibabel's opinion of what we wrote.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use mindscan_nifti::{
    NiftiVolume, OutputDatatype, VoxelData, WriteOptions, qform_from_affine, read_nifti,
    write_nifti, write_nifti_with,
};

const FILES: [&str; 6] = [
    "anatomical.nii",
    "example4d.nii.gz",
    "example_nifti2.nii.gz",
    "functional.nii",
    "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "standard.nii.gz",
];

fn assert_same_image(a: &NiftiVolume, b: &NiftiVolume, what: &str) {
    assert_eq!(a.dims, b.dims, "{what}: dims");
    assert_eq!(a.data, b.data, "{what}: data");
    assert!(
        affine_close(&a.affine, &b.affine, 1e-5),
        "{what}: affine {:?} vs {:?}",
        a.affine,
        b.affine
    );
    assert_eq!(a.sform_code, b.sform_code, "{what}");
    assert_eq!(a.qform_code, b.qform_code, "{what}");
    assert_eq!(a.scl_slope as f32, b.scl_slope as f32, "{what}");
    assert_eq!(a.scl_inter as f32, b.scl_inter as f32, "{what}");
    assert_eq!(a.xyzt_units, b.xyzt_units, "{what}");
    assert_eq!(a.descrip, b.descrip, "{what}");
    for i in 3..a.dims.len() {
        assert_eq!(
            a.pixdim[i] as f32,
            b.pixdim[i] as f32,
            "{what}: pixdim[{}]",
            i + 1
        );
    }
}

fn no_temp_files_left(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}

#[test]
fn every_fixture_round_trips_nii_and_nii_gz() {
    let dir = tempfile::tempdir().unwrap();
    for name in FILES {
        let orig = read_nifti(&data_dir().join(name)).unwrap();
        for ext in ["nii", "nii.gz"] {
            let out = dir.path().join(format!("out_{name}.{ext}"));
            write_nifti(&out, &orig).unwrap();
            let bytes = std::fs::read(&out).unwrap();
            assert_eq!(
                bytes.starts_with(&[0x1f, 0x8b]),
                ext == "nii.gz",
                "{name}.{ext}: gzip by extension"
            );
            let back = read_nifti(&out).unwrap();
            assert_eq!(back.version, 1);
            assert!(!back.big_endian);
            assert_same_image(&orig, &back, &format!("{name} -> .{ext}"));
            // the qform written from the affine reproduces it (all six are rigid + zoom)
            assert!(
                affine_close(&back.qform, &orig.affine, 1e-5),
                "{name}: qform {:?}",
                back.qform
            );
        }
    }
    no_temp_files_left(dir.path());
}

#[test]
fn gzip_level_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let vol = read_nifti(&data_dir().join("example4d.nii.gz")).unwrap();
    let fast = dir.path().join("fast.nii.gz");
    let small = dir.path().join("small.nii.gz");
    let stored = dir.path().join("stored.nii.gz");
    let with = |level| WriteOptions {
        gzip_level: level,
        ..WriteOptions::default()
    };
    write_nifti_with(&fast, &vol, &with(1)).unwrap();
    write_nifti_with(&small, &vol, &with(9)).unwrap();
    write_nifti_with(&stored, &vol, &with(0)).unwrap();
    let len = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(len(&stored) > len(&fast), "level 0 stores");
    assert!(len(&small) <= len(&fast), "level 9 not larger than level 1");
    for p in [&fast, &small, &stored] {
        assert_eq!(read_nifti(p).unwrap().data, vol.data);
    }
}

#[test]
fn conversion_to_float32_and_int16() {
    let dir = tempfile::tempdir().unwrap();
    let vol = read_nifti(&data_dir().join("functional.nii")).unwrap();
    assert!(vol.has_scaling());
    let want = vol.scaled_f32().unwrap();

    let f = dir.path().join("f32.nii");
    let opts = WriteOptions {
        datatype: OutputDatatype::Float32,
        ..WriteOptions::default()
    };
    write_nifti_with(&f, &vol, &opts).unwrap();
    let back = read_nifti(&f).unwrap();
    assert!(!back.has_scaling());
    assert_eq!(back.data, VoxelData::F32(want.clone()));

    let i = dir.path().join("i16.nii.gz");
    let opts = WriteOptions {
        datatype: OutputDatatype::Int16 {
            slope: 0.5,
            inter: 600.0,
        },
        ..WriteOptions::default()
    };
    write_nifti_with(&i, &vol, &opts).unwrap();
    let back = read_nifti(&i).unwrap();
    assert_eq!(back.data.type_name(), "int16");
    assert_eq!((back.scl_slope, back.scl_inter), (0.5, 600.0));
    let got = back.scaled_f32().unwrap();
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() <= 0.25 + 1e-3, "{a} vs {b}");
    }

    // complex data cannot become float32
    let c = NiftiVolume::from_data(vec![2], VoxelData::C64(vec![[1.0, 2.0], [3.0, 4.0]]), IDENT);
    let err = write_nifti_with(
        &dir.path().join("c.nii"),
        &c,
        &WriteOptions {
            datatype: OutputDatatype::Float32,
            ..WriteOptions::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("complex64"), "{err}");
    no_temp_files_left(dir.path());
}

const IDENT: [[f64; 4]; 4] = [
    [1., 0., 0., 0.],
    [0., 1., 0., 0.],
    [0., 0., 1., 0.],
    [0., 0., 0., 1.],
];

#[test]
fn failed_write_names_the_file_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = NiftiVolume::from_data(vec![3, 3], VoxelData::U8(vec![0; 8]), IDENT);
    let out = dir.path().join("bad.nii.gz");
    let err = write_nifti(&out, &bad).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("bad.nii.gz") && msg.contains("need 9 voxels but the data has 8"),
        "{msg}"
    );
    assert!(!out.exists());
    no_temp_files_left(dir.path());

    let missing_dir = dir.path().join("no/such/dir/x.nii");
    let ok = NiftiVolume::from_data(vec![2], VoxelData::U8(vec![1, 2]), IDENT);
    let msg = write_nifti(&missing_dir, &ok).unwrap_err().to_string();
    assert!(
        msg.contains("x.nii") && msg.contains("cannot create temporary file"),
        "{msg}"
    );
}

#[test]
fn write_replaces_existing_file_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v.nii");
    let a = NiftiVolume::from_data(vec![2, 2], VoxelData::U8(vec![1, 2, 3, 4]), IDENT);
    let b = NiftiVolume::from_data(vec![2, 2], VoxelData::U8(vec![9, 8, 7, 6]), IDENT);
    write_nifti(&out, &a).unwrap();
    write_nifti(&out, &b).unwrap();
    assert_eq!(read_nifti(&out).unwrap().data, b.data);
    no_temp_files_left(dir.path());
}

fn oblique_affine() -> [[f64; 4]; 4] {
    // rotation of 0.4 rad about z then 0.2 rad about x, zooms (1.2, 0.9, 2.5), flipped x
    let (cz, sz) = (0.4f64.cos(), 0.4f64.sin());
    let (cx, sx) = (0.2f64.cos(), 0.2f64.sin());
    let rz = [[cz, -sz, 0.], [sz, cz, 0.], [0., 0., 1.]];
    let rx = [[1., 0., 0.], [0., cx, -sx], [0., sx, cx]];
    let zoom = [-1.2, 0.9, 2.5];
    let mut a = IDENT;
    for i in 0..3 {
        for j in 0..3 {
            let r: f64 = (0..3).map(|k| rx[i][k] * rz[k][j]).sum();
            a[i][j] = r * zoom[j];
        }
    }
    a[0][3] = -90.5;
    a[1][3] = 110.25;
    a[2][3] = -70.0;
    a
}

/// Volumes for the nibabel check: every datatype nibabel writes, an oblique affine,
/// a qform-only file and a file with neither transform (fallback affine).
fn synthetic_volumes() -> Vec<(String, NiftiVolume)> {
    let n: usize = 4 * 3 * 2;
    let mut out = vec![];
    let datas = vec![
        VoxelData::U8((0..n).map(|i| (i * 11) as u8).collect()),
        VoxelData::I8((0..n).map(|i| (i as i8) * 5 - 60).collect()),
        VoxelData::U16((0..n).map(|i| (i as u16) * 2731).collect()),
        VoxelData::I16((0..n).map(|i| (i as i16) * 1400 - 16000).collect()),
        VoxelData::U32((0..n).map(|i| (i as u32) * 178_956_970).collect()),
        VoxelData::I32((0..n).map(|i| (i as i32 - 12) * 178_956_970).collect()),
        VoxelData::U64((0..n).map(|i| (i as u64) << 59 | i as u64).collect()),
        VoxelData::I64((0..n).map(|i| (i as i64 - 12) << 58).collect()),
        VoxelData::F32((0..n).map(|i| i as f32 * -0.37 + 1e-3).collect()),
        VoxelData::F64((0..n).map(|i| (i as f64).sqrt() * 1e100).collect()),
        VoxelData::C64((0..n).map(|i| [i as f32, -(i as f32) * 0.5]).collect()),
        VoxelData::C128((0..n).map(|i| [i as f64 * 1e-3, 7.0 - i as f64]).collect()),
        VoxelData::Rgb24((0..n).map(|i| [i as u8, 255 - i as u8, 7]).collect()),
        VoxelData::Rgba32((0..n).map(|i| [i as u8, 1, 255 - i as u8, 128]).collect()),
    ];
    for data in datas {
        let name = data.type_name().to_string();
        let mut v = NiftiVolume::from_data(vec![4, 3, 2], data, oblique_affine());
        v.qform_code = 1;
        out.push((name, v));
    }
    let base = || VoxelData::I16((0..n as i16).collect());
    let mut q_only = NiftiVolume::from_data(vec![4, 3, 2], base(), oblique_affine());
    q_only.sform_code = 0;
    q_only.qform_code = 1;
    out.push(("qform_only".into(), q_only));
    let mut neither = NiftiVolume::from_data(vec![4, 3, 2], base(), oblique_affine());
    neither.sform_code = 0;
    neither.qform_code = 0;
    out.push(("no_transform".into(), neither));
    let mut scaled = NiftiVolume::from_data(vec![4, 3, 2], base(), oblique_affine());
    scaled.scl_slope = 0.25;
    scaled.scl_inter = -3.0;
    out.push(("scaled".into(), scaled));
    out
}

#[test]
fn synthetic_volumes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for (name, vol) in synthetic_volumes() {
        for ext in ["nii", "nii.gz"] {
            let p = dir.path().join(format!("{name}.{ext}"));
            write_nifti(&p, &vol).unwrap();
            let back = read_nifti(&p).unwrap();
            assert_eq!(back.data, vol.data, "{name}.{ext}");
            assert_eq!(back.datatype, vol.data.datatype_code(), "{name}.{ext}");
            if vol.sform_code != 0 || vol.qform_code != 0 {
                assert!(
                    affine_close(&back.affine, &vol.affine, 1e-5),
                    "{name}: {:?}",
                    back.affine
                );
            }
            // qform reproduces the rigid rotation + zoom affine
            assert!(
                affine_close(&back.qform, &vol.affine, 1e-5),
                "{name}: qform {:?}",
                back.qform
            );
            let (q, sheared) = qform_from_affine(&vol.affine);
            assert!(!sheared);
            assert_eq!(back.qfac, q.qfac);
        }
    }
}

/// The nibabel cross-check runs when python3 has nibabel and numpy. A fresh machine without them
/// skips it with a message; CI installs them and sets MINDSCAN_REQUIRE_PYTHON_CHECKS=1 so a
/// missing nibabel fails there instead of passing silently.
fn python_checks_skipped() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import nibabel, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return false;
    }
    assert!(
        std::env::var("MINDSCAN_REQUIRE_PYTHON_CHECKS").as_deref() != Ok("1"),
        "python3 with nibabel and numpy is needed for the nibabel cross-check: \
         pip install nibabel numpy"
    );
    eprintln!("skipped: nibabel cross-check (pip install nibabel numpy to run it)");
    true
}

#[test]
fn nibabel_reads_what_we_write() {
    if python_checks_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut vols: Vec<(String, NiftiVolume)> = FILES
        .iter()
        .map(|f| (f.to_string(), read_nifti(&data_dir().join(f)).unwrap()))
        .collect();
    vols.extend(synthetic_volumes());
    let mut cases = vec![];
    for (name, vol) in &vols {
        for ext in ["nii", "nii.gz"] {
            let p: PathBuf = dir.path().join(format!("w_{name}.{ext}"));
            write_nifti(&p, vol).unwrap();
            let back = read_nifti(&p).unwrap();
            let (slope, inter) = back.scaling().unwrap_or((1.0, 0.0));
            cases.push(serde_json::json!({
                "path": p.to_str().unwrap(),
                "shape": back.dims,
                "datatype_code": back.datatype,
                // what our reader says; for "no_transform" this is the fallback affine
                "affine": back.affine,
                "qform_affine": vol.affine,
                "sform_code": back.sform_code,
                "qform_code": back.qform_code,
                "slope": slope,
                "inter": inter,
                "raw_sha256": sha256_hex(&vol.data.to_le_bytes()),
            }));
        }
    }
    let cases_path = dir.path().join("cases.json");
    std::fs::write(&cases_path, serde_json::to_string(&cases).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_nibabel.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&cases_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "nibabel disagrees:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("{n}/{n} files agree", n = cases.len())),
        "{stdout}"
    );
}
