//! No PHI from the test files reaches sidecars, names or inspect output.

use crate::common::data_dir;
use dicom_core::Tag;
use mindscan_dicom::{
    DeidOptions, hash_uid, inspect, load_series, load_series_with, sanitize_token, scan,
};
use std::path::PathBuf;

const PHI: &[(u16, u16)] = &[
    (0x0010, 0x0010), // PatientName
    (0x0010, 0x0020), // PatientID
    (0x0010, 0x0030), // PatientBirthDate
    (0x0010, 0x1010), // PatientAge
    (0x0010, 0x1040), // PatientAddress
    (0x0008, 0x0080), // InstitutionName
    (0x0008, 0x0081), // InstitutionAddress
    (0x0008, 0x1040), // InstitutionalDepartmentName
    (0x0008, 0x1010), // StationName
    (0x0018, 0x1000), // DeviceSerialNumber
    (0x0008, 0x0050), // AccessionNumber
    (0x0008, 0x0090), // ReferringPhysicianName
    (0x0008, 0x1070), // OperatorsName
    (0x0008, 0x0020), // StudyDate
    (0x0008, 0x0021), // SeriesDate
    (0x0008, 0x0022), // AcquisitionDate
    (0x0008, 0x0030), // StudyTime
    (0x0008, 0x0032), // AcquisitionTime
    (0x0020, 0x0010), // StudyID
    (0x0008, 0x1030), // StudyDescription
    (0x0020, 0x000D), // StudyInstanceUID
    (0x0020, 0x000E), // SeriesInstanceUID
    (0x0008, 0x0018), // SOPInstanceUID
    (0x0020, 0x0052), // FrameOfReferenceUID
];

fn phi_values(path: &PathBuf) -> Vec<String> {
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(Tag(0x7FE0, 0x0010))
        .open_file(path)
        .unwrap();
    let mut out = Vec::new();
    for (g, e) in PHI {
        if let Some(el) = obj.get(Tag(*g, *e))
            && let Ok(v) = el.to_str()
        {
            // Each component of multi-part values (e.g. names) separately.
            for part in v.split(['^', '\\', '=']) {
                let p = part.trim_matches(|c: char| c == '\0' || c.is_whitespace());
                // Very short values ("M", "1") would match anything.
                if p.len() >= 4 && !p.chars().all(|c| c == '0') {
                    out.push(p.to_string());
                }
            }
        }
    }
    out
}

fn inputs() -> Vec<PathBuf> {
    let d = data_dir();
    let mut v = vec![
        d.join("series/GE_MR750_EPI_fMRI_mr_0004/DICOM"),
        d.join("series/Siemens_PrismaFit_XA30i_5001_anat-T1w_acq-tfl/DICOM"),
        d.join("series/Siemens_Skyra_EPI_mosaic_mr_0003/DICOM"),
        d.join("single/dcm_qa_ts/1.dcm"),
    ];
    for n in [
        "CT_small.dcm",
        "MR_small.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "examples_ybr_color.dcm",
    ] {
        v.push(d.join("single/pydicom").join(n));
    }
    v
}

#[test]
fn no_phi_in_sidecar_names_or_inspect() {
    let mut checked = 0;
    for input in inputs() {
        let rep = scan(std::slice::from_ref(&input));
        assert_eq!(rep.series.len(), 1, "{}", input.display());
        let s = &rep.series[0];
        let mut phi = Vec::new();
        for f in &s.frames {
            phi.extend(phi_values(&f.path));
        }
        phi.sort();
        phi.dedup();
        assert!(
            !phi.is_empty(),
            "test file {} has no PHI to check",
            input.display()
        );
        let vol = load_series(s).unwrap();
        let mut text = serde_json::to_string(&vol.sidecar).unwrap();
        text.push_str(&vol.name);
        text.push_str(&s.id);
        text.push_str(&s.output_name("%p_%s_%d_%m_%e_%j_%n_%i_%t"));
        text.push_str(&serde_json::to_string(&inspect(std::slice::from_ref(&input))).unwrap());
        for w in &vol.warnings {
            text.push_str(w);
        }
        for v in &phi {
            assert!(
                !text.contains(v.as_str()),
                "PHI value {v:?} of {} leaked: {text}",
                input.display()
            );
            checked += 1;
        }
        // Series UID replaced by its stable hash.
        let uid = vol.sidecar["SeriesInstanceUID"].as_str().unwrap();
        assert!(uid.starts_with("2.25.") && uid.len() <= 64);
    }
    assert!(checked > 50, "only {checked} PHI values checked");
}

#[test]
fn allow_list_keeps_only_named_tags() {
    let input = data_dir().join("series/Siemens_Skyra_EPI_mosaic_mr_0003/DICOM");
    let s = &scan(&[input]).series[0];
    let opts = DeidOptions::keeping(["InstitutionName", "AcquisitionTime"]);
    let vol = load_series_with(s, &opts.into()).unwrap();
    assert_eq!(vol.sidecar["InstitutionName"], "NIH");
    assert!(vol.sidecar.contains_key("AcquisitionTime"));
    assert!(!vol.sidecar.contains_key("InstitutionAddress"));
    assert!(!vol.sidecar.contains_key("StationName"));
    assert!(!vol.sidecar.contains_key("PatientName"));
    let default = load_series(s).unwrap();
    assert!(!default.sidecar.contains_key("InstitutionName"));
    assert!(!default.sidecar.contains_key("AcquisitionTime"));
}

#[test]
fn uid_hash_is_stable_and_salted() {
    let a = hash_uid("1.2.3.4", "");
    assert_eq!(a, hash_uid("1.2.3.4", ""));
    assert_ne!(a, hash_uid("1.2.3.5", ""));
    assert_ne!(a, hash_uid("1.2.3.4", "secret"));
    assert!(a.starts_with("2.25.") && a[5..].chars().all(|c| c.is_ascii_digit()));
}

#[test]
fn name_tokens_are_sanitised() {
    for bad in [
        "../../etc/passwd",
        "a/b\\c",
        "..",
        "x\u{0}y\u{7}z\n",
        ".hidden",
        "ünïcødé name",
        &"long".repeat(100),
    ] {
        let t = sanitize_token(bad);
        assert!(!t.contains('/') && !t.contains('\\'), "{t}");
        assert!(!t.contains(".."), "{t}");
        assert!(!t.starts_with('.'), "{t}");
        assert!(t.chars().all(|c| !c.is_control()), "{t:?}");
        assert!(t.len() <= 64, "{t}");
    }
    assert_eq!(sanitize_token("EPI PE=AP"), "EPI_PE=AP");
    let s = &scan(&[data_dir().join("series/Siemens_Skyra_EPI_mosaic_mr_0003/DICOM")]).series[0];
    assert_eq!(s.output_name("%p_%s"), "EPI_PE=AP_3");
    assert_eq!(s.output_name("../%p/%s"), "EPI_PE=AP_3");
    assert_eq!(s.output_name("%n%i"), "unnamed");
}
