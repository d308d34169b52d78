//! GE direct B0 field maps: one series holds the field map (Hz) and a magnitude image with the
//! same ImageType; dcm2niix splits them (see `ge_field_map_hz` in core/header.rs). No public
//! GE B0 map is in the test data, so this fixture is made from the real GE EPI series by
//! editing the tags dcm2niix's rule reads, on the first 30 instances (two volumes of 15
//! slices):
//! * (0019,109C) PulseSequenceName `epiRT` -> `b0map`,
//! * (0020,1002) ImagesInAcquisition 15 -> 30 (GE's LocationsInAcquisition (0021,104F) stays
//!   15, so the two differ),
//! * (0019,10E2) VelocityEncodeScale 0 -> -10 (negative on field maps: two echo times).
//!
//! By the rule, instances 1-15 are the field map and 16-30 the magnitude image.

use crate::common::data_dir;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use mindscan_dicom::{load_series, scan};

fn fixture(dir: &std::path::Path) {
    let src = data_dir().join("series/GE_MR750_EPI_fMRI_mr_0004/DICOM");
    std::fs::create_dir_all(dir).unwrap();
    for i in 1..=30 {
        let name = format!("axial_epi_fmri_interleaved_i_to_s-{i:05}.dcm");
        let mut obj = dicom_object::open_file(src.join(&name)).unwrap();
        obj.put(DataElement::new(
            Tag(0x0019, 0x109C),
            VR::LO,
            PrimitiveValue::from("b0map"),
        ));
        obj.put(DataElement::new(
            Tag(0x0020, 0x1002),
            VR::IS,
            PrimitiveValue::from("30"),
        ));
        obj.put(DataElement::new(
            Tag(0x0019, 0x10E2),
            VR::DS,
            PrimitiveValue::from("-10"),
        ));
        obj.write_to_file(dir.join(&name)).unwrap();
    }
}

#[test]
fn ge_b0_map_splits_into_field_map_hz_and_magnitude() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    let rep = scan(&[tmp.path().to_path_buf()]);
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert_eq!(rep.series.len(), 2, "field map and magnitude");
    let names: Vec<String> = rep.series.iter().map(|s| s.output_name("%p_%s")).collect();
    let hz = rep
        .series
        .iter()
        .find(|s| s.output_name("%p_%s").ends_with("_fieldmaphz"))
        .unwrap_or_else(|| panic!("no _fieldmaphz series: {names:?}"));
    let mag = rep
        .series
        .iter()
        .find(|s| !s.output_name("%p_%s").ends_with("_fieldmaphz"))
        .unwrap();
    // Each is one volume of the 15 slices.
    assert_eq!(hz.dims, [64, 64, 15, 1]);
    assert_eq!(mag.dims, [64, 64, 15, 1]);
    let instances = |s: &mindscan_dicom::Series| {
        let mut v: Vec<i64> = s.frames.iter().filter_map(|f| f.instance_number).collect();
        v.sort();
        v
    };
    assert_eq!(instances(hz), (1..=15).collect::<Vec<_>>());
    assert_eq!(instances(mag), (16..=30).collect::<Vec<_>>());

    let side = load_series(hz).unwrap().sidecar;
    assert_eq!(side["Units"], "Hz");
    let it: Vec<&str> = side["ImageType"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        it.contains(&"FIELDMAPHZ") && !it.contains(&"MAGNITUDE"),
        "{it:?}"
    );
    let te1 = side["EchoTime1"].as_f64().unwrap();
    let te2 = side["EchoTime2"].as_f64().unwrap();
    assert!(!side.contains_key("EchoTime"));
    let expected = 1.0 / (2.0 * std::f64::consts::PI * 10.0);
    assert!(((te2 - te1) - expected).abs() < 1e-9, "{te1} {te2}");

    let side = load_series(mag).unwrap().sidecar;
    assert!(side.get("Units").is_none());
    assert!(side.contains_key("EchoTime"));
}
