//! Test helpers: a tiny NIfTI-1 reader and a world-space comparison.
#![allow(dead_code, clippy::needless_range_loop)]

use mindscan_plugin_dicom::core::DicomVolume;
use std::io::Read;
use std::path::{Path, PathBuf};

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/dicom")
}

pub struct Nifti {
    pub dims: [usize; 4],
    pub affine: [[f64; 4]; 4],
    pub values: Vec<f64>,
    pub scl_slope: f32,
    pub scl_inter: f32,
    pub datatype: i16,
}

/// Minimal little-endian NIfTI-1 reader (.nii or .nii.gz), sform affine.
pub fn read_nifti(path: &Path) -> Nifti {
    let raw = std::fs::read(path).unwrap();
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        raw
    };
    let i16_at = |o: usize| i16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let f32_at = |o: usize| f32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    assert_eq!(i32::from_le_bytes(bytes[0..4].try_into().unwrap()), 348);
    let nd = i16_at(40) as usize;
    let mut dims = [1usize; 4];
    for (d, dim) in dims.iter_mut().enumerate().take(nd.min(4)) {
        *dim = i16_at(42 + 2 * d) as usize;
    }
    let datatype = i16_at(70);
    let vox_offset = f32_at(108) as usize;
    let (scl_slope, scl_inter) = (f32_at(112), f32_at(116));
    assert!(i16_at(254) > 0, "sform_code must be set");
    let mut affine = [[0.0; 4]; 4];
    for (r, row) in affine.iter_mut().enumerate().take(3) {
        for (c, v) in row.iter_mut().enumerate() {
            *v = f32_at(280 + 16 * r + 4 * c) as f64;
        }
    }
    affine[3] = [0.0, 0.0, 0.0, 1.0];
    let n: usize = dims.iter().product();
    let d = &bytes[vox_offset..];
    let values: Vec<f64> = match datatype {
        2 => d[..n].iter().map(|&v| v as f64).collect(),
        4 => (0..n)
            .map(|i| i16::from_le_bytes([d[2 * i], d[2 * i + 1]]) as f64)
            .collect(),
        512 => (0..n)
            .map(|i| u16::from_le_bytes([d[2 * i], d[2 * i + 1]]) as f64)
            .collect(),
        16 => (0..n)
            .map(|i| f32::from_le_bytes(d[4 * i..4 * i + 4].try_into().unwrap()) as f64)
            .collect(),
        t => panic!("datatype {t} not handled by the test reader"),
    };
    Nifti {
        dims,
        affine,
        values,
        scl_slope,
        scl_inter,
        datatype,
    }
}

fn inv3(a: &[[f64; 4]; 4]) -> [[f64; 3]; 3] {
    let m = |r: usize, c: usize| a[r][c];
    let det = m(0, 0) * (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1))
        - m(0, 1) * (m(1, 0) * m(2, 2) - m(1, 2) * m(2, 0))
        + m(0, 2) * (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0));
    assert!(det.abs() > 1e-12);
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            let (i1, i2) = ((j + 1) % 3, (j + 2) % 3);
            let (j1, j2) = ((i + 1) % 3, (i + 2) % 3);
            r[i][j] = (m(i1, j1) * m(i2, j2) - m(i1, j2) * m(i2, j1)) / det;
        }
    }
    r
}

/// Compare a volume with a dcm2niix reference through the two affines: the
/// volumes must cover the same voxel grid (each of our voxel centres is a
/// reference voxel centre within `tol_mm`), and every voxel must hold the same
/// (scaled) value at the same world position.
pub fn assert_same_as_reference(vol: &DicomVolume, r: &Nifti, tol_mm: f64) {
    let total: usize = vol.dims.iter().product();
    assert_eq!(total, r.values.len(), "voxel count differs");
    let mut sorted_a = vol.dims[..3].to_vec();
    sorted_a.sort();
    let mut sorted_b = r.dims[..3].to_vec();
    sorted_b.sort();
    assert_eq!(
        sorted_a, sorted_b,
        "spatial dims differ (ours {:?} ref {:?})",
        vol.dims, r.dims
    );
    assert_eq!(vol.dims[3], r.dims[3], "number of volumes differs");
    let a = &vol.affine;
    let bi = inv3(&r.affine);
    let b = &r.affine;
    // M = B^-1 A (linear part) must be a signed permutation.
    let mut lin = [[0.0; 3]; 3];
    for (i, row) in lin.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| bi[i][k] * a[k][j]).sum();
            let e = v.abs();
            assert!(
                e < 1e-4 || (e - 1.0).abs() < 1e-4,
                "affines are not related by an axis permutation/flip: {lin:?}\nours {a:?}\nref {b:?}"
            );
        }
    }
    let to_ref = |ijk: [f64; 3]| -> [f64; 3] {
        let w: Vec<f64> = (0..3)
            .map(|r| a[r][0] * ijk[0] + a[r][1] * ijk[1] + a[r][2] * ijk[2] + a[r][3] - b[r][3])
            .collect();
        [0, 1, 2].map(|i| bi[i][0] * w[0] + bi[i][1] * w[1] + bi[i][2] * w[2])
    };
    // Corners: world positions coincide with reference voxel centres.
    let [ni, nj, nk, nt] = vol.dims;
    for &ci in &[0, ni - 1] {
        for &cj in &[0, nj - 1] {
            for &ck in &[0, nk - 1] {
                let q = to_ref([ci as f64, cj as f64, ck as f64]);
                let rq = q.map(f64::round);
                let back: Vec<f64> = (0..3)
                    .map(|r| b[r][0] * rq[0] + b[r][1] * rq[1] + b[r][2] * rq[2] + b[r][3])
                    .collect();
                let w: Vec<f64> = (0..3)
                    .map(|r| {
                        a[r][0] * ci as f64 + a[r][1] * cj as f64 + a[r][2] * ck as f64 + a[r][3]
                    })
                    .collect();
                let dist = ((back[0] - w[0]).powi(2)
                    + (back[1] - w[1]).powi(2)
                    + (back[2] - w[2]).powi(2))
                .sqrt();
                assert!(
                    dist < tol_mm,
                    "corner ({ci},{cj},{ck}) is {dist} mm off the reference grid"
                );
                for d in 0..3 {
                    assert!(
                        rq[d] >= 0.0 && (rq[d] as usize) < r.dims[d],
                        "corner outside reference volume"
                    );
                }
            }
        }
    }
    // Every voxel: same value at the same world position.
    let o = to_ref([0.0; 3]).map(f64::round);
    let mut perm = [[0i64; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            perm[i][j] = lin[i][j].round() as i64;
        }
    }
    let rs = if r.scl_slope == 0.0 {
        1.0
    } else {
        r.scl_slope as f64
    };
    let ri = r.scl_inter as f64;
    let vs = vol.scl_slope.unwrap_or(1.0);
    let vi = vol.scl_inter.unwrap_or(0.0);
    let mut mismatches = 0usize;
    let mut nonzero = 0usize;
    for t in 0..nt {
        for k in 0..nk {
            for j in 0..nj {
                for i in 0..ni {
                    let src = [i as i64, j as i64, k as i64];
                    let q: Vec<usize> = (0..3)
                        .map(|d| {
                            (o[d] as i64
                                + perm[d][0] * src[0]
                                + perm[d][1] * src[1]
                                + perm[d][2] * src[2]) as usize
                        })
                        .collect();
                    let ridx = q[0] + r.dims[0] * (q[1] + r.dims[1] * (q[2] + r.dims[2] * t));
                    let idx = i + ni * (j + nj * (k + nk * t));
                    let ours = vol.voxels.get_f64(idx) * vs + vi;
                    let theirs = r.values[ridx] * rs + ri;
                    if ours != 0.0 {
                        nonzero += 1;
                    }
                    if (ours - theirs).abs() > 1e-6 * theirs.abs().max(1.0) {
                        if mismatches < 5 {
                            eprintln!(
                                "mismatch at ({i},{j},{k},{t}) ours {ours} ref {theirs} (ref idx {q:?})"
                            );
                        }
                        mismatches += 1;
                    }
                }
            }
        }
    }
    assert_eq!(
        mismatches, 0,
        "{mismatches} voxel(s) differ from the reference"
    );
    assert!(nonzero > total / 10, "volume is mostly zero");
}

pub fn ref_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
