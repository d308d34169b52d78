//! Sidecar parity with dcm2niix: for each shared series, every key of dcm2niix's sidecar is
//! in ours with the same value (numbers within 1e-4 relative: dcm2niix prints 6 significant
//! digits), except the keys listed, with a reason, in fixtures/sidecar_differences.json. A
//! listed key that has come to match fails the test too, so the list shrinks as keys land.

use crate::common::data_dir;
use mindscan_dicom::{load_series, scan};
use serde_json::Value;

const SERIES: [&str; 6] = [
    "GE_MR750_EPI_fMRI_mr_0004",
    "Philips_Ingenia_402_3D_pCASL_classic",
    "Philips_Ingenia_402_3D_pCASL_enhanced",
    "Siemens_PrismaFit_XA30i_5001_anat-T1w_acq-tfl",
    "Siemens_Skyra_EPI_mosaic_mr_0003",
    "Siemens_XA30i_15001_DWI_ColFA_RGB",
];

fn same(ours: &Value, theirs: &Value) -> bool {
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            (a - b).abs() <= 1e-4 * b.abs().max(1e-9) || (a - b).abs() < 1e-9
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        _ => ours == theirs,
    }
}

fn reference(dir: &str) -> serde_json::Map<String, Value> {
    let refs = data_dir().join("series").join(dir).join("Ref");
    let json = std::fs::read_dir(&refs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

#[test]
fn every_dcm2niix_sidecar_key_matches_or_is_a_documented_difference() {
    let diffs: Value = serde_json::from_str(include_str!("fixtures/sidecar_differences.json"))
        .expect("fixture parses");
    let listed = |dir: &str, key: &str| -> bool {
        diffs["software"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == key)
            || diffs["identifying"].get(key).is_some()
            || diffs["not_reproduced"].get(key).is_some()
            || diffs["per_series"][dir].get(key).is_some()
    };
    let mut wrong = Vec::new();
    let mut stale = Vec::new();
    let mut matched = 0;
    for dir in SERIES {
        let rep = scan(&[data_dir().join("series").join(dir).join("DICOM")]);
        assert_eq!(rep.series.len(), 1, "{dir}");
        let ours = load_series(&rep.series[0]).unwrap().sidecar;
        for (key, theirs) in reference(dir) {
            let ok = ours.get(&key).is_some_and(|v| same(v, &theirs));
            match (ok, listed(dir, &key)) {
                (true, false) => matched += 1,
                (false, false) => wrong.push(format!(
                    "{dir}: {key}: ours {:?}, dcm2niix {theirs}",
                    ours.get(&key)
                )),
                (true, true) if diffs["per_series"][dir].get(&key).is_some() => {
                    stale.push(format!("{dir}: {key} now matches: remove it from the list"))
                }
                _ => {}
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "sidecar keys that differ:\n{}",
        wrong.join("\n")
    );
    assert!(stale.is_empty(), "{}", stale.join("\n"));
    assert!(matched > 150, "only {matched} keys compared equal");
}
