//! Reading the MONAI fixtures (`tests/fixtures/monai/`, written by `tools/make_fixtures.py`).
#![allow(dead_code)]

use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/monai")
}

/// The brain model trained by `tools/train_brain64.py` (committed under pipelines/models).
pub fn brain_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/models/brain-ddpm-64")
}

/// A fixture file's tensors by name. Missing fixtures fail the test: they are committed.
pub struct Fixture {
    pub name: String,
    bytes: Vec<u8>,
}

impl Fixture {
    pub fn open(file: &str) -> Fixture {
        Fixture::at(fixtures().join(file))
    }

    pub fn at(path: PathBuf) -> Fixture {
        let file = path.display().to_string();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (fixtures come from tools/make_fixtures.py)",
                path.display()
            )
        });
        Fixture { name: file, bytes }
    }

    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    pub fn has(&self, key: &str) -> bool {
        self.st().names().contains(&key)
    }

    pub fn shape(&self, key: &str) -> Vec<usize> {
        self.st()
            .tensor(key)
            .unwrap_or_else(|e| panic!("{}: {key}: {e}", self.name))
            .shape()
            .to_vec()
    }

    pub fn f32(&self, key: &str) -> Vec<f32> {
        let st = self.st();
        let t = st
            .tensor(key)
            .unwrap_or_else(|e| panic!("{}: {key}: {e}", self.name));
        assert_eq!(t.dtype(), Dtype::F32, "{}: {key}", self.name);
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    pub fn i64(&self, key: &str) -> Vec<i64> {
        let st = self.st();
        let t = st
            .tensor(key)
            .unwrap_or_else(|e| panic!("{}: {key}: {e}", self.name));
        assert_eq!(t.dtype(), Dtype::I64, "{}: {key}", self.name);
        t.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
}

/// max |a − b| / max |b|: the parity measure.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let scale = b
        .iter()
        .fold(0f64, |m, &v| m.max(v.abs() as f64))
        .max(1e-30);
    let diff = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    diff / scale
}
