//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use sha2::{Digest, Sha256};

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/nifti")
}

pub fn expected() -> serde_json::Value {
    let path = data_dir().join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("expected.json parses")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn affine_close(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4], tol: f64) -> bool {
    (0..4).all(|i| (0..4).all(|j| (a[i][j] - b[i][j]).abs() <= tol * (1.0 + b[i][j].abs())))
}

pub fn json_affine(v: &serde_json::Value) -> [[f64; 4]; 4] {
    let mut a = [[0.0; 4]; 4];
    for (i, row) in a.iter_mut().enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x = v[i][j].as_f64().expect("affine number");
        }
    }
    a
}

/// Hand-made single-file NIfTI header + data, independent of the crate's writer.
/// `data_le` holds the voxel values little-endian; `word` is the byte-swap unit.
pub struct Craft<'a> {
    pub version: u8,
    pub big_endian: bool,
    pub datatype: i16,
    pub bitpix: i16,
    pub dims: &'a [i64],
    pub data_le: &'a [u8],
    pub word: usize,
    pub slope: f64,
    pub inter: f64,
}

impl Craft<'_> {
    pub fn bytes(&self) -> Vec<u8> {
        let be = self.big_endian;
        let mut data = self.data_le.to_vec();
        if be && self.word > 1 {
            data.chunks_exact_mut(self.word).for_each(|c| c.reverse());
        }
        let mut h: Vec<u8>;
        macro_rules! put {
            ($off:expr, $v:expr) => {{
                let b = if be {
                    $v.to_be_bytes()
                } else {
                    $v.to_le_bytes()
                };
                h[$off..$off + b.len()].copy_from_slice(&b);
            }};
        }
        if self.version == 1 {
            h = vec![0u8; 352];
            put!(0, 348i32);
            put!(40, self.dims.len() as i16);
            for i in 0..7 {
                put!(42 + 2 * i, *self.dims.get(i).unwrap_or(&1) as i16);
            }
            put!(70, self.datatype);
            put!(72, self.bitpix);
            put!(76, 1f32);
            for i in 1..8 {
                put!(76 + 4 * i, 1.5f32 * i as f32);
            }
            put!(108, 352f32);
            put!(112, self.slope as f32);
            put!(116, self.inter as f32);
            put!(254, 1i16); // sform_code
            for (r, row) in [
                [1.5f32, 0., 0., -10.],
                [0., 3.0, 0., 20.],
                [0., 0., 4.5, 30.],
            ]
            .iter()
            .enumerate()
            {
                for (c, v) in row.iter().enumerate() {
                    put!(280 + 16 * r + 4 * c, *v);
                }
            }
            h[344..348].copy_from_slice(b"n+1\0");
        } else {
            h = vec![0u8; 544];
            put!(0, 540i32);
            h[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
            put!(12, self.datatype);
            put!(14, self.bitpix);
            put!(16, self.dims.len() as i64);
            for i in 0..7 {
                put!(24 + 8 * i, *self.dims.get(i).unwrap_or(&1));
            }
            put!(104, 1f64);
            for i in 1..8 {
                put!(104 + 8 * i, 1.5f64 * i as f64);
            }
            put!(168, 544i64);
            put!(176, self.slope);
            put!(184, self.inter);
            put!(348, 1i32); // sform_code
            for (r, row) in [
                [1.5f64, 0., 0., -10.],
                [0., 3.0, 0., 20.],
                [0., 0., 4.5, 30.],
            ]
            .iter()
            .enumerate()
            {
                for (c, v) in row.iter().enumerate() {
                    put!(400 + 32 * r + 8 * c, *v);
                }
            }
        }
        h.extend_from_slice(&data);
        h
    }
}

/// The sform `Craft` writes.
pub const CRAFT_AFFINE: [[f64; 4]; 4] = [
    [1.5, 0., 0., -10.],
    [0., 3.0, 0., 20.],
    [0., 0., 4.5, 30.],
    [0., 0., 0., 1.],
];

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A temporary directory, in memory (/dev/shm) when available: some tests write
/// thousands of small files.
pub fn fast_tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().unwrap()
}
