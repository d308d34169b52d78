//! Broken inputs: clear errors/warnings, and the rest is still converted.

use crate::common::{assert_same_as_reference, data_dir, read_nifti};
use mindscan_dicom::{
    DeidOptions, DicomError, ScanReport, inspect, load_series, load_series_lenient, scan,
};
use std::path::{Path, PathBuf};

fn copy_dir(src: &Path, dst: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dst).unwrap();
    let mut out = Vec::new();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let d = dst.join(p.file_name().unwrap());
        std::fs::copy(&p, &d).unwrap();
        out.push(d);
    }
    out.sort();
    out
}

fn series_dir(name: &str) -> PathBuf {
    data_dir().join("series").join(name).join("DICOM")
}

#[test]
fn non_dicom_files_are_skipped_not_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    copy_dir(
        &series_dir("Siemens_Skyra_EPI_mosaic_mr_0003"),
        &dir.join("nested/deeper"),
    );
    std::fs::write(dir.join("notes.txt"), "hello, not DICOM\n").unwrap();
    std::fs::write(dir.join(".DS_Store"), [0u8, 1, 2, 3]).unwrap();
    std::fs::write(dir.join("DICOMDIR"), vec![0u8; 200]).unwrap();
    std::fs::write(
        dir.join("random.bin"),
        (0..5000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let rep = scan(std::slice::from_ref(&dir));
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert_eq!(rep.series.len(), 1);
    let names: Vec<String> = rep
        .skipped
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into())
        .collect();
    for n in [
        "notes.txt",
        ".DS_Store",
        "DICOMDIR",
        "random.bin",
        "README-Series.txt",
    ] {
        assert!(
            names.contains(&n.to_string()),
            "{n} not reported as skipped: {names:?}"
        );
    }
    let dd = rep
        .skipped
        .iter()
        .find(|s| s.path.ends_with("DICOMDIR"))
        .unwrap();
    assert!(dd.reason.contains("DICOMDIR"));
    let vol = load_series(&rep.series[0]).unwrap();
    let r = read_nifti(
        &data_dir().join("series/Siemens_Skyra_EPI_mosaic_mr_0003/Ref/EPI_PE=AP_3.nii.gz"),
    );
    assert_same_as_reference(&vol, &r, 1e-3);
}

#[test]
fn glob_inputs() {
    let pat = series_dir("GE_MR750_EPI_fMRI_mr_0004").join("*-0000*.dcm");
    let rep = scan(&[pat]);
    assert!(rep.errors.is_empty());
    assert_eq!(rep.series.len(), 1);
    assert_eq!(rep.series[0].file_count(), 9); // -00001 .. -00009
    let none = scan(&[series_dir("GE_MR750_EPI_fMRI_mr_0004").join("*.nothing")]);
    assert_eq!(none.errors.len(), 1);
    assert!(none.errors[0].to_string().contains("matched nothing"));
}

#[test]
fn truncated_and_corrupt_files_reported_rest_converted() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &series_dir("Siemens_Skyra_EPI_mosaic_mr_0003"),
        &tmp.path().join("mosaic"),
    );
    let ge = copy_dir(
        &series_dir("GE_MR750_EPI_fMRI_mr_0004"),
        &tmp.path().join("ge"),
    );
    let file = |suffix: &str| {
        ge.iter()
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap()
            .clone()
    };
    // One GE image cut inside its header; one cut inside its pixel data after the scan (a
    // file that changes between the header pass and decoding), below.
    let in_header = file("-00150.dcm");
    let bytes = std::fs::read(&in_header).unwrap();
    std::fs::write(&in_header, &bytes[..600]).unwrap();
    let in_pixels = file("-00001.dcm");
    let pixels_bytes = std::fs::read(&in_pixels).unwrap();
    // Cut before the scan, the header pass already refuses it, naming the file.
    let early = tmp.path().join("early/cut.dcm");
    std::fs::create_dir_all(early.parent().unwrap()).unwrap();
    std::fs::write(&early, &pixels_bytes[..pixels_bytes.len() - 3000]).unwrap();
    let early_rep = scan(std::slice::from_ref(&early));
    assert!(early_rep.series.is_empty());
    let early_msgs: Vec<String> = early_rep.errors.iter().map(|e| e.to_string()).collect();
    assert!(
        early_msgs.len() == 1
            && early_msgs[0].contains("cut.dcm")
            && early_msgs[0].contains("7FE0,0010"),
        "{early_msgs:?}"
    );
    std::fs::remove_dir_all(early.parent().unwrap()).unwrap();
    // A corrupt header: DICM magic followed by garbage.
    let mut bad = vec![0u8; 128];
    bad.extend_from_slice(b"DICM");
    bad.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I', 0xff, 0xff, 1, 2, 3]);
    std::fs::write(tmp.path().join("mosaic/corrupt.dcm"), bad).unwrap();

    let rep = scan(&[tmp.path().to_path_buf()]);
    std::fs::write(&in_pixels, &pixels_bytes[..pixels_bytes.len() - 3000]).unwrap();
    let msgs: Vec<String> = rep.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("corrupt.dcm")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("-00150.dcm")), "{msgs:?}");
    assert_eq!(rep.series.len(), 2);
    // The mosaic series converts as usual.
    let mosaic = rep.series.iter().find(|s| s.mosaic.is_some()).unwrap();
    let r = read_nifti(
        &data_dir().join("series/Siemens_Skyra_EPI_mosaic_mr_0003/Ref/EPI_PE=AP_3.nii.gz"),
    );
    assert_same_as_reference(&load_series(mosaic).unwrap(), &r, 1e-3);
    // GE: the last volume is incomplete → 9 volumes kept, with a warning.
    let ge_s = rep.series.iter().find(|s| s.mosaic.is_none()).unwrap();
    assert_eq!(ge_s.dims, [64, 64, 15, 9]);
    assert!(
        ge_s.warnings
            .iter()
            .any(|w| w.contains("incomplete volume")),
        "{:?}",
        ge_s.warnings
    );
    // Strict load: error naming the file cut inside its pixel data.
    let err = load_series(ge_s).unwrap_err().to_string();
    assert!(err.contains("-00001.dcm"), "{err}");
    assert!(err.contains("1.2.840.10008.1.2.1"), "{err}");
    // Lenient load: the rest converted, the bad slice zero-filled and reported.
    let (vol, errs) = load_series_lenient(ge_s, &DeidOptions::default().into()).unwrap();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].to_string().contains("-00001.dcm"));
    let w = vol.sidecar["Warnings"].to_string();
    assert!(
        w.contains("could not be decoded") && w.contains("incomplete volume"),
        "{w}"
    );
    assert!(
        !w.contains(tmp.path().to_str().unwrap()),
        "no paths in the sidecar"
    );
    let slice = 64 * 64;
    assert!(
        (0..slice).all(|i| vol.voxels.get_f64(i) == 0.0),
        "slice of instance 1 zero-filled"
    );
    assert!((slice..2 * slice).any(|i| vol.voxels.get_f64(i) != 0.0));
}

#[test]
fn undecodable_file_names_file_and_syntax() {
    let tmp = tempfile::tempdir().unwrap();
    let src = data_dir().join("single/dcm_qa_ts/9.dcm");
    let bytes = std::fs::read(&src).unwrap();
    let p = tmp.path().join("j2k_cut.dcm");
    std::fs::write(&p, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let rep = scan(std::slice::from_ref(&p));
    let msg = if let Some(s) = rep.series.first() {
        load_series(s).unwrap_err().to_string()
    } else {
        rep.errors[0].to_string()
    };
    assert!(msg.contains("j2k_cut.dcm"), "{msg}");
    if !rep.series.is_empty() {
        assert!(msg.contains("1.2.840.10008.1.2.4.90"), "{msg}");
    }
}

#[test]
fn missing_slice_is_warned_and_zero_filled() {
    let tmp = tempfile::tempdir().unwrap();
    let full_dir = series_dir("Siemens_PrismaFit_XA30i_5001_anat-T1w_acq-tfl");
    let files = copy_dir(&full_dir, tmp.path());
    let gone = files
        .iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("5001050_")
        })
        .unwrap();
    std::fs::remove_file(gone).unwrap();
    let full = load_series(&scan(&[full_dir]).series[0]).unwrap();
    let rep = scan(&[tmp.path().to_path_buf()]);
    assert_eq!(rep.series.len(), 1);
    let s = &rep.series[0];
    assert!(
        s.warnings.iter().any(|w| w.contains("missing slice")),
        "{:?}",
        s.warnings
    );
    let vol = load_series(s).unwrap();
    assert_eq!(vol.dims, full.dims);
    for r in 0..3 {
        for c in 0..4 {
            assert!(
                (vol.affine[r][c] - full.affine[r][c]).abs() < 1e-3,
                "affine changed"
            );
        }
    }
    let slice = vol.dims[0] * vol.dims[1];
    let mut zero_slices = Vec::new();
    for k in 0..vol.dims[2] {
        let same = (0..slice)
            .all(|i| vol.voxels.get_f64(k * slice + i) == full.voxels.get_f64(k * slice + i));
        let zero = (0..slice).all(|i| vol.voxels.get_f64(k * slice + i) == 0.0);
        if !same {
            assert!(zero, "slice {k} differs but is not the zero-filled gap");
            zero_slices.push(k);
        }
    }
    assert_eq!(zero_slices.len(), 1, "exactly one missing slice");
    assert!(
        vol.sidecar["Warnings"]
            .to_string()
            .contains("missing slice")
    );
}

#[test]
fn duplicated_instances_dropped_with_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let files = copy_dir(&series_dir("Siemens_Skyra_EPI_mosaic_mr_0003"), tmp.path());
    let dcm = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "dcm"))
        .unwrap();
    std::fs::copy(dcm, tmp.path().join("copy_of_first.dcm")).unwrap();
    let rep = scan(&[tmp.path().to_path_buf()]);
    assert_eq!(rep.series.len(), 1);
    let s = &rep.series[0];
    assert_eq!(s.dims, [72, 72, 5, 2]);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("duplicate SOPInstanceUID")),
        "{:?}",
        s.warnings
    );
    assert_eq!(rep.warnings.len(), 1);
    let r = read_nifti(
        &data_dir().join("series/Siemens_Skyra_EPI_mosaic_mr_0003/Ref/EPI_PE=AP_3.nii.gz"),
    );
    assert_same_as_reference(&load_series(s).unwrap(), &r, 1e-3);
}

#[test]
fn missing_input_is_an_error() {
    let rep = scan(&[PathBuf::from("/definitely/not/here.dcm")]);
    assert!(rep.series.is_empty());
    assert!(matches!(rep.errors[0], DicomError::Read { .. }));
}

#[test]
fn inspect_summaries() {
    let sums = inspect(&[data_dir().join("series")]);
    assert_eq!(sums.len(), 6);
    let ge = sums
        .iter()
        .find(|s| s.file_count == 150)
        .expect("GE series");
    assert_eq!(ge.dims, [64, 64, 15, 10]);
    assert_eq!(
        ge.transfer_syntaxes,
        vec!["1.2.840.10008.1.2.1".to_string()]
    );
    assert!(ge.orientation.starts_with("Tra"), "{}", ge.orientation);
    let mosaic = sums.iter().find(|s| s.mosaic.is_some()).unwrap();
    assert_eq!(
        (mosaic.file_count, mosaic.dims, mosaic.mosaic),
        (2, [72, 72, 5, 2], Some(5))
    );
    assert!((mosaic.voxel_size[2] - 12.0).abs() < 1e-6);
    let sag = sums.iter().find(|s| s.file_count == 96).unwrap();
    assert!(sag.orientation.starts_with("Sag"), "{}", sag.orientation);
    assert_eq!(sag.name, "anat-T1w_acq-tfl_5001");
    let ts = inspect(&[data_dir().join("single/dcm_qa_ts/4.dcm")]);
    assert_eq!(
        ts[0].transfer_syntaxes,
        vec!["1.2.840.10008.1.2.5".to_string()]
    );
    assert_eq!(ts[0].dims, [64, 64, 35, 1]);
}

/// Symlinks `up -> ..` and `self -> .` inside the input folder: the scan ends, and each file
/// is found once (a folder reached through a link is not entered again).
#[cfg(unix)]
#[test]
fn symlink_loops_end_and_find_each_file_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    let files = copy_dir(
        &series_dir("Siemens_Skyra_EPI_mosaic_mr_0003"),
        &dir.join("a"),
    );
    std::os::unix::fs::symlink("..", dir.join("a/up")).unwrap();
    std::os::unix::fs::symlink(".", dir.join("a/self")).unwrap();
    let rep = scan(&[dir]);
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert_eq!(rep.series.len(), 1);
    let dicoms = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "dcm"));
    assert_eq!(rep.series[0].file_count(), dicoms.count());
}

/// Crafted files that used to abort the process (stack overflow in dicom-rs' recursive reader)
/// or make it allocate gigabytes from a claimed length: each is now a read error naming the
/// file and the reason, and the rest of the scan goes on.
#[test]
fn hostile_structure_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let good = series_dir("Siemens_Skyra_EPI_mosaic_mr_0003");
    let dir = tmp.path().join("in");
    copy_dir(&good, &dir);

    // 10,000 nested sequences (undefined lengths, never closed) right after the meta group.
    let mosaic = std::fs::read(
        std::fs::read_dir(&good)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "dcm"))
            .unwrap(),
    )
    .unwrap();
    let meta_len = u32::from_le_bytes(mosaic[140..144].try_into().unwrap()) as usize;
    let data_start = 144 + meta_len;
    let mut deep = mosaic[..data_start].to_vec();
    for _ in 0..10_000 {
        deep.extend_from_slice(&[
            0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        deep.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    deep.extend_from_slice(&mosaic[data_start..]);
    std::fs::write(dir.join("deep.dcm"), deep).unwrap();

    // An implicit VR PatientName claiming 0xFFFFFFF0 bytes.
    let mut implicit = std::fs::read(data_dir().join("single/dcm_qa_ts/2.dcm")).unwrap();
    let at = implicit
        .windows(4)
        .position(|w| w == [0x10, 0x00, 0x10, 0x00])
        .expect("PatientName");
    implicit[at + 4..at + 8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    std::fs::write(dir.join("liar.dcm"), implicit).unwrap();

    // NumberOfFrames = 2147483647 in the enhanced Philips file.
    let enhanced = std::fs::read(
        series_dir("Philips_Ingenia_402_3D_pCASL_enhanced").join("402_SOURCE_-_3D_pCASL_6mm.dcm"),
    )
    .unwrap();
    let old = b"\x28\x00\x08\x00IS\x04\x00224 ";
    let at = enhanced
        .windows(old.len())
        .position(|w| w == old)
        .expect("NumberOfFrames");
    let mut frames = enhanced[..at].to_vec();
    frames.extend_from_slice(b"\x28\x00\x08\x00IS\x0a\x002147483647");
    frames.extend_from_slice(&enhanced[at + old.len()..]);
    std::fs::write(dir.join("frames.dcm"), frames).unwrap();

    let rep = scan(&[dir]);
    let err = |name: &str| error_naming(&rep, name);
    assert!(
        err("deep.dcm").contains("nested deeper"),
        "{}",
        err("deep.dcm")
    );
    assert!(
        err("liar.dcm").contains("claims 4294967280 bytes"),
        "{}",
        err("liar.dcm")
    );
    assert!(
        err("frames.dcm").contains("NumberOfFrames"),
        "{}",
        err("frames.dcm")
    );
    assert_eq!(rep.series.len(), 1, "the good series is still found");
}

/// Found by fuzzing (`dicom_file`, kept as a regression input): a 17 KB deflated file whose
/// inflated data set has an OB element claiming 1.9 GB. dicom-rs inflates as it parses and
/// allocated the claim; the structure walk now inflates the data set first (bounded) and checks
/// its lengths like those of any file. The fuzzer's file also has a file meta group length
/// that disagrees with its elements (dicom-rs and the walk then read different bytes): refused
/// for that; a second file makes a sound deflate stream that lies.
#[test]
fn a_lying_length_inside_a_deflated_data_set_is_refused() {
    use std::io::Write;
    let found = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz-deflated-ob-length.dcm");
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&found).unwrap();
    std::fs::write(tmp.path().join("found.dcm"), &bytes).unwrap();
    // Its file meta group (transfer syntax: deflated), then a sound deflate stream of
    // Modality and a private OB element claiming 0xFFFFFFF0 bytes.
    let ts = b"1.2.840.10008.1.2.1.99";
    let meta_end = bytes.windows(ts.len()).position(|w| w == ts).unwrap() + ts.len();
    let mut liar = bytes[..meta_end].to_vec();
    liar[140..144].copy_from_slice(&((meta_end - 144) as u32).to_le_bytes());
    let mut body = vec![0x08, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'M', b'R'];
    body.extend([0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
    body.extend(0xFFFF_FFF0u32.to_le_bytes());
    body.extend([0u8; 64]);
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&body).unwrap();
    liar.extend(enc.finish().unwrap());
    std::fs::write(tmp.path().join("liar.dcm"), liar).unwrap();

    let rep = scan(&[tmp.path().to_path_buf()]);
    let err = |name: &str| error_naming(&rep, name);
    assert!(
        err("found.dcm").contains("group length"),
        "{}",
        err("found.dcm")
    );
    let liar = err("liar.dcm");
    assert!(liar.contains("claims 4294967280 bytes"), "{liar}");
    assert!(liar.contains("in the inflated data set"), "{liar}");
    assert!(rep.series.is_empty());
}

/// The scan's error that names `name` (the test fails when there is none).
fn error_naming(rep: &ScanReport, name: &str) -> String {
    rep.errors
        .iter()
        .map(|e| e.to_string())
        .find(|e| e.contains(name))
        .unwrap_or_else(|| panic!("no error for {name}: {:?}", rep.errors))
}
