//! Test support: the TorchIO fixtures (`fixtures/torchio/`, made by bench/augment/make_fixtures.py)
//! and the real input volume they were made from.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;

use mindscan_augment::Volume;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torchio")
}

pub fn json(name: &str) -> serde_json::Value {
    let p = fixtures().join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

pub fn voxels(name: &str) -> Vec<f32> {
    let p = fixtures().join(format!("{name}.f32.gz"));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The real T1 brain the fixtures start from (nibabel's anatomical.nii, 33x41x25, LAS, 2 mm).
pub fn input() -> Volume {
    let meta = json("input");
    let dims: [usize; 3] = serde_json::from_value(meta["shape"].clone()).unwrap();
    let affine: [[f64; 4]; 4] = serde_json::from_value(meta["affine_ras"].clone()).unwrap();
    Volume::new(voxels("input"), dims, affine).unwrap()
}

/// Largest absolute difference relative to the largest magnitude of `want`, and the fraction of
/// voxels differing by more than `tol` of that magnitude.
pub fn compare(got: &[f32], want: &[f32], tol: f64) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    let scale = want
        .iter()
        .fold(0f64, |m, &v| m.max(v.abs() as f64))
        .max(1e-12);
    let mut worst = 0f64;
    let mut bad = 0usize;
    for (&g, &w) in got.iter().zip(want) {
        let d = (g as f64 - w as f64).abs() / scale;
        worst = worst.max(d);
        if d > tol {
            bad += 1;
        }
    }
    (worst, bad as f64 / got.len() as f64)
}
