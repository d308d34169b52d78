//! Test helpers: a tiny NIfTI-1 reader and a world-space comparison.
#![allow(dead_code, clippy::needless_range_loop)]

use mindscan_dicom::DicomVolume;
use mindscan_grid_compare::{Grid, assert_same_world_grid};
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

/// Compare a volume with a dcm2niix reference through the two affines: the
/// volumes must cover the same voxel grid (each of our voxel centres is a
/// reference voxel centre within `tol_mm`), and every voxel must hold the same
/// (scaled) value at the same world position.
pub fn assert_same_as_reference(vol: &DicomVolume, r: &Nifti, tol_mm: f64) {
    let total: usize = vol.dims.iter().product();
    assert_eq!(total, r.values.len(), "voxel count differs");
    let (vs, vi) = (vol.scl_slope.unwrap_or(1.0), vol.scl_inter.unwrap_or(0.0));
    // NIfTI: a zero slope means no scaling.
    let rs = if r.scl_slope == 0.0 {
        1.0
    } else {
        r.scl_slope as f64
    };
    let ri = r.scl_inter as f64;
    assert_same_world_grid(
        &Grid {
            dims: vol.dims,
            affine: vol.affine,
            value: &|i| vol.voxels.get_f64(i) * vs + vi,
        },
        &Grid {
            dims: r.dims,
            affine: r.affine,
            value: &|i| r.values[i] * rs + ri,
        },
        tol_mm,
        "DICOM series",
    );
}

pub fn ref_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
