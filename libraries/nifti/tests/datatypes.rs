//! Every datatype, hand-crafted in both byte orders, NIfTI-1 and NIfTI-2, plain and gzip.

use crate::common::*;
use mindscan_nifti::{
    NiftiVolume, VoxelData, datatype, f64_to_binary128_le, f64_to_x87_le, read_nifti, write_nifti,
};

const DIMS: [i64; 4] = [3, 2, 2, 2];
const N: usize = 24;

/// (datatype code, bitpix, swap unit, little-endian bytes, expected values)
fn cases() -> Vec<(i16, i16, usize, Vec<u8>, VoxelData)> {
    let idx = 0..N;
    let mut out = vec![];
    macro_rules! case {
        ($code:expr, $variant:ident, $t:ty, $f:expr) => {{
            let v: Vec<$t> = idx.clone().map($f).collect();
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            out.push((
                $code,
                (std::mem::size_of::<$t>() * 8) as i16,
                std::mem::size_of::<$t>(),
                bytes,
                VoxelData::$variant(v),
            ));
        }};
    }
    case!(datatype::UINT8, U8, u8, |i| (i * 10 + 5) as u8);
    case!(datatype::INT8, I8, i8, |i| (i as i8 - 12) * 10);
    case!(datatype::UINT16, U16, u16, |i| 0x0102u16
        .wrapping_mul(i as u16 + 1)
        | 0x8000);
    case!(datatype::INT16, I16, i16, |i| (i as i16 - 12) * 2701);
    case!(datatype::UINT32, U32, u32, |i| 0x0102_0304u32
        .wrapping_mul(i as u32 + 1));
    case!(datatype::INT32, I32, i32, |i| (i as i32 - 12) * 0x0102_0304);
    case!(datatype::UINT64, U64, u64, |i| 0x0102_0304_0506_0708u64
        .wrapping_mul(i as u64 + 1));
    case!(datatype::INT64, I64, i64, |i| (i as i64 - 12)
        * 0x0102_0304_0506_0708);
    case!(datatype::FLOAT32, F32, f32, |i| (i as f32 - 12.0)
        * 1.2345e-3);
    case!(datatype::FLOAT64, F64, f64, |i| (i as f64 - 12.0)
        * 1.2345e200);
    // complex: [re, im] pairs, each part swapped separately
    let c64: Vec<[f32; 2]> = idx
        .clone()
        .map(|i| [i as f32 * 0.5, -(i as f32) * 3.25])
        .collect();
    out.push((
        datatype::COMPLEX64,
        64,
        4,
        c64.iter().flatten().flat_map(|x| x.to_le_bytes()).collect(),
        VoxelData::C64(c64),
    ));
    let c128: Vec<[f64; 2]> = idx
        .clone()
        .map(|i| [i as f64 * 1e-300, 1e300 - i as f64])
        .collect();
    out.push((
        datatype::COMPLEX128,
        128,
        8,
        c128.iter()
            .flatten()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        VoxelData::C128(c128),
    ));
    // colour: bytes, no swapping
    let rgb: Vec<[u8; 3]> = idx
        .clone()
        .map(|i| [i as u8, 100 + i as u8, 255 - i as u8])
        .collect();
    out.push((
        datatype::RGB24,
        24,
        1,
        rgb.iter().flatten().copied().collect(),
        VoxelData::Rgb24(rgb),
    ));
    let rgba: Vec<[u8; 4]> = idx
        .clone()
        .map(|i| [i as u8, 1, 2, 255 - i as u8])
        .collect();
    out.push((
        datatype::RGBA32,
        32,
        1,
        rgba.iter().flatten().copied().collect(),
        VoxelData::Rgba32(rgba),
    ));
    // float128 in both encodings (swapped as one 16-byte unit) -> f64
    let f: Vec<f64> = idx.clone().map(|i| (i as f64 - 12.0) * 0.125e10).collect();
    out.push((
        datatype::FLOAT128,
        128,
        16,
        f.iter().flat_map(|&x| f64_to_binary128_le(x)).collect(),
        VoxelData::F64(f.clone()),
    ));
    out.push((
        datatype::FLOAT128,
        128,
        16,
        f.iter().flat_map(|&x| f64_to_x87_le(x)).collect(),
        VoxelData::F64(f.clone()),
    ));
    // complex256: two float128 per voxel -> complex128
    let c: Vec<[f64; 2]> = idx.map(|i| [i as f64 * 1.5, -(i as f64)]).collect();
    out.push((
        datatype::COMPLEX256,
        256,
        16,
        c.iter()
            .flatten()
            .flat_map(|&x| f64_to_binary128_le(x))
            .collect(),
        VoxelData::C128(c),
    ));
    out
}

#[test]
fn every_datatype_both_byte_orders_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (code, bitpix, word, data_le, want) in cases() {
        for version in [1u8, 2] {
            for big_endian in [false, true] {
                let bytes = Craft {
                    version,
                    big_endian,
                    datatype: code,
                    bitpix,
                    dims: &DIMS,
                    data_le: &data_le,
                    word,
                    slope: 0.0,
                    inter: 0.0,
                }
                .bytes();
                for gz in [false, true] {
                    let name = format!(
                        "t{code}_v{version}_{}_{checked}.nii{}",
                        if big_endian { "be" } else { "le" },
                        if gz { ".gz" } else { "" }
                    );
                    let p = dir.path().join(&name);
                    std::fs::write(&p, if gz { gzip(&bytes) } else { bytes.clone() }).unwrap();
                    let vol = read_nifti(&p).unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(vol.data, want, "{name}");
                    assert_eq!(vol.datatype, code, "{name}");
                    assert_eq!(vol.version, version, "{name}");
                    assert_eq!(vol.big_endian, big_endian, "{name}");
                    assert_eq!(vol.dims, vec![3, 2, 2, 2], "{name}");
                    assert_eq!(vol.pixdim, vec![1.5, 3.0, 4.5, 6.0], "{name}");
                    assert_eq!(vol.affine, CRAFT_AFFINE, "{name}");
                    assert!(!vol.has_scaling(), "slope 0 means no scaling ({name})");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 17 * 8);
}

#[test]
fn every_datatype_through_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    for (code, _, _, _, data) in cases() {
        let vol = NiftiVolume::from_data(vec![3, 2, 2, 2], data.clone(), CRAFT_AFFINE);
        for ext in ["nii", "nii.gz"] {
            let p = dir
                .path()
                .join(format!("w{code}_{}.{ext}", data.type_name()));
            write_nifti(&p, &vol).unwrap();
            let back = read_nifti(&p).unwrap();
            assert_eq!(back.data, data);
            assert_eq!(back.datatype, data.datatype_code());
            assert!(affine_close(&back.affine, &CRAFT_AFFINE, 1e-6));
            assert_eq!(back.pixdim[..3], [1.5, 3.0, 4.5]);
        }
    }
}

fn crafted_i16(slope: f64, inter: f64) -> Vec<u8> {
    let data: Vec<u8> = (0..N as i16)
        .flat_map(|x| (x * 100 - 1000).to_le_bytes())
        .collect();
    Craft {
        version: 1,
        big_endian: false,
        datatype: datatype::INT16,
        bitpix: 16,
        dims: &DIMS,
        data_le: &data,
        word: 2,
        slope,
        inter,
    }
    .bytes()
}

#[test]
fn scaling_rules_follow_nibabel() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.nii");
    let raw: Vec<f32> = (0..N as i16).map(|x| f32::from(x * 100 - 1000)).collect();
    // (slope, inter, expected scaling)
    let cases = [
        (0.0, 5.0, None),
        (f64::NAN, 5.0, None),
        (f64::INFINITY, 0.0, None),
        (1.0, 0.0, None),
        (2.0, 0.0, Some((2.0, 0.0))),
        (1.0, -7.5, Some((1.0, -7.5))),
        (0.5, 10.0, Some((0.5, 10.0))),
        (0.5, f64::INFINITY, Some((0.5, 0.0))),
    ];
    for (slope, inter, want) in cases {
        std::fs::write(&p, crafted_i16(slope, inter)).unwrap();
        let vol = read_nifti(&p).unwrap();
        assert_eq!(vol.scaling(), want, "slope {slope} inter {inter}");
        assert_eq!(vol.has_scaling(), want.is_some());
        let got = vol.scaled_f32().unwrap();
        let (m, b) = want.unwrap_or((1.0, 0.0));
        for (g, r) in got.iter().zip(&raw) {
            assert_eq!(*g, (f64::from(*r) * m + b) as f32);
        }
    }
    // complex and RGB have no scalar value
    let c = NiftiVolume::from_data(vec![1], VoxelData::Rgb24(vec![[1, 2, 3]]), CRAFT_AFFINE);
    assert!(c.scaled_f32().is_none());
}

#[test]
fn affine_selection_sform_qform_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.nii");
    let mut bytes = crafted_i16(1.0, 0.0);
    // quaternion: 90 degrees about z (b=c=0, d=sqrt(0.5)), offsets 1,2,3, qfac -1
    let d = std::f32::consts::FRAC_1_SQRT_2;
    bytes[264..268].copy_from_slice(&d.to_le_bytes());
    for (i, v) in [1f32, 2., 3.].iter().enumerate() {
        bytes[268 + 4 * i..272 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    bytes[76..80].copy_from_slice(&(-1f32).to_le_bytes());
    let qform = [
        [0.0, -3.0, 0.0, 1.0],
        [1.5, 0.0, 0.0, 2.0],
        [0.0, 0.0, -4.5, 3.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let fallback = [
        [-1.5, 0.0, 0.0, 1.5],
        [0.0, 3.0, 0.0, -1.5],
        [0.0, 0.0, 4.5, -2.25],
        [0.0, 0.0, 0.0, 1.0],
    ];
    // (qform_code, sform_code, expected affine)
    for (qc, sc, want) in [
        (0i16, 1i16, CRAFT_AFFINE),
        (1, 1, CRAFT_AFFINE),
        (2, 0, qform),
        (0, 0, fallback),
        (-1, 0, qform),
    ] {
        bytes[252..254].copy_from_slice(&qc.to_le_bytes());
        bytes[254..256].copy_from_slice(&sc.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let vol = read_nifti(&p).unwrap();
        assert!(
            affine_close(&vol.affine, &want, 1e-6),
            "codes {qc}/{sc}: {:?}",
            vol.affine
        );
        assert!(affine_close(&vol.qform, &qform, 1e-6), "{:?}", vol.qform);
        assert_eq!(vol.sform, CRAFT_AFFINE);
        assert_eq!(
            (vol.qform_code, vol.sform_code),
            (i32::from(qc), i32::from(sc))
        );
    }
}
