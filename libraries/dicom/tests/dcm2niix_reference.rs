//! Compare against the dcm2niix reference NIfTIs shipped with the test data.

use crate::common::{assert_same_as_reference, data_dir, read_nifti, ref_json};
use mindscan_dicom::{DicomError, load_series, scan};
use serde_json::Value;

fn close(a: &Value, b: &Value, what: &str) {
    let (x, y) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    assert!(
        (x - y).abs() < 1e-6 * y.abs().max(1.0),
        "{what}: ours {x} ref {y}"
    );
}

fn check_sidecar(ours: &serde_json::Map<String, Value>, reference: &Value) {
    for k in [
        "EchoTime",
        "RepetitionTime",
        "FlipAngle",
        "SliceThickness",
        "MagneticFieldStrength",
        "SeriesNumber",
    ] {
        if let Some(r) = reference.get(k) {
            close(
                ours.get(k).unwrap_or_else(|| panic!("sidecar lacks {k}")),
                r,
                k,
            );
        }
    }
    for k in [
        "Modality",
        "Manufacturer",
        "ManufacturersModelName",
        "SeriesDescription",
        "ProtocolName",
    ] {
        if let Some(r) = reference.get(k) {
            assert_eq!(ours.get(k), Some(r), "{k}");
        }
    }
    // ImageType: dcm2niix splits values on '_' and appends the image class;
    // XA30 references use a private ImageType, so compare the common prefix.
    let it_ours = ours["ImageType"].as_array().unwrap();
    let it_ref = reference["ImageType"].as_array().unwrap();
    assert_eq!(it_ours[..3], it_ref[..3], "ImageType");
    if it_ref.contains(&Value::from("MAGNITUDE")) {
        assert!(
            it_ours.contains(&Value::from("MAGNITUDE")),
            "ImageType class"
        );
    }
    let io = ours["ImageOrientationPatientDICOM"].as_array().unwrap();
    for (a, b) in io.iter().zip(
        reference["ImageOrientationPatientDICOM"]
            .as_array()
            .unwrap(),
    ) {
        assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-5);
    }
    if let Some(r) = reference.get("AcquisitionMatrixPE") {
        close(&ours["AcquisitionMatrixPE"], r, "AcquisitionMatrixPE");
    }
    // SliceTiming: from the Siemens CSA header (mosaics); GE timing is not derived.
    let is_siemens = reference["Manufacturer"] == "Siemens";
    if let Some(r) = reference.get("SliceTiming").filter(|_| is_siemens) {
        let o = ours["SliceTiming"].as_array().expect("SliceTiming");
        let r = r.as_array().unwrap();
        assert_eq!(o.len(), r.len());
        for (a, b) in o.iter().zip(r) {
            assert!(
                (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-4,
                "SliceTiming"
            );
        }
    }
}

fn series_case(dir: &str, ref_nii: &str, ref_js: &str, dims4: usize, nonimage: usize) {
    let base = data_dir().join("series").join(dir);
    let rep = scan(&[base.join("DICOM")]);
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert_eq!(rep.series.len(), 1, "one series expected");
    assert_eq!(
        rep.skipped.len(),
        nonimage,
        "non-DICOM files skipped: {:?}",
        rep.skipped
    );
    let s = &rep.series[0];
    let vol = load_series(s).unwrap();
    let r = read_nifti(&base.join("Ref").join(ref_nii));
    assert_eq!(vol.dims[3], dims4);
    assert_same_as_reference(&vol, &r, 1e-3);
    // dcm2niix writes scl_slope 1 / scl_inter 0 for these.
    assert_eq!(vol.scl_slope, Some(r.scl_slope as f64));
    assert_eq!(vol.scl_inter, Some(r.scl_inter as f64));
    assert_eq!(
        vol.voxels.nifti_datatype(),
        r.datatype,
        "datatype as dcm2niix"
    );
    // Voxel size / TR.
    let mut ours = vol.pixdim[..3].to_vec();
    ours.sort_by(|a, b| a.partial_cmp(b).unwrap());
    check_sidecar(&vol.sidecar, &ref_json(&base.join("Ref").join(ref_js)));
    assert!(
        vol.warnings.is_empty(),
        "unexpected warnings {:?}",
        vol.warnings
    );
}

#[test]
fn ge_epi_fmri_4d() {
    series_case(
        "GE_MR750_EPI_fMRI_mr_0004",
        "DCM2NIIX_regression_test_4.nii.gz",
        "DCM2NIIX_regression_test_4.json",
        10,
        1,
    );
}

#[test]
fn siemens_xa30_t1_sagittal() {
    series_case(
        "Siemens_PrismaFit_XA30i_5001_anat-T1w_acq-tfl",
        "5001_anat-T1w_acq-tfl.nii.gz",
        "5001_anat-T1w_acq-tfl.json",
        1,
        0,
    );
}

#[test]
fn siemens_mosaic_epi() {
    series_case(
        "Siemens_Skyra_EPI_mosaic_mr_0003",
        "EPI_PE=AP_3.nii.gz",
        "EPI_PE=AP_3.json",
        2,
        1,
    );
}

fn ts_case(n: u32) -> Result<(), DicomError> {
    let base = data_dir().join("single/dcm_qa_ts");
    let rep = scan(&[base.join(format!("{n}.dcm"))]);
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert_eq!(rep.series.len(), 1);
    let s = &rep.series[0];
    assert_eq!(s.mosaic, Some(35));
    let vol = load_series(s)?;
    let r = read_nifti(&base.join("Ref/1.nii.gz")); // all 9 references are byte-identical
    assert_same_as_reference(&vol, &r, 1e-3);
    check_sidecar(&vol.sidecar, &ref_json(&base.join(format!("Ref/{n}.json"))));
    Ok(())
}

#[test]
fn ts1_explicit_le() {
    ts_case(1).unwrap();
}
#[test]
fn ts2_implicit_le() {
    ts_case(2).unwrap();
}
#[test]
fn ts3_explicit_be() {
    ts_case(3).unwrap();
}
#[test]
fn ts4_rle() {
    ts_case(4).unwrap();
}
#[test]
fn ts5_jpeg_lossless_dcmtk() {
    ts_case(5).unwrap();
}
#[test]
fn ts6_jpeg_lossless_gdcm() {
    ts_case(6).unwrap();
}
#[test]
fn ts9_jpeg2000() {
    ts_case(9).unwrap();
}

#[cfg(feature = "jpegls")]
#[test]
fn ts7_ts8_jpegls() {
    ts_case(7).unwrap();
    ts_case(8).unwrap();
}

#[cfg(not(feature = "jpegls"))]
#[test]
fn ts7_ts8_jpegls_needs_feature() {
    for n in [7, 8] {
        let err = ts_case(n).unwrap_err().to_string();
        assert!(err.contains("--features jpegls"), "{err}");
        assert!(err.contains("1.2.840.10008.1.2.4.80"), "{err}");
        assert!(err.contains(&format!("{n}.dcm")), "{err}");
    }
}
