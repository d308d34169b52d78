//! Every file in tests/data/nifti must read exactly as nibabel reads it
//! (expected.json is written by tests/data/nifti/make_fixtures.py).

use crate::common::*;
use mindscan_nifti::{VoxelData, read_nifti};

fn rel_close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12)
}

#[test]
fn all_six_files_match_nibabel() {
    let exp = expected();
    let files = exp["files"].as_array().unwrap();
    assert_eq!(files.len(), 6, "expected.json covers the six files");
    for f in files {
        let name = f["file"].as_str().unwrap();
        let path = data_dir().join(name);
        let vol = read_nifti(&path).unwrap_or_else(|e| panic!("{e}"));

        assert_eq!(
            vol.version as u64,
            f["nifti_version"].as_u64().unwrap(),
            "{name}"
        );
        let shape: Vec<usize> = f["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(vol.dims, shape, "{name}: dims");
        assert_eq!(
            vol.datatype as i64,
            f["datatype_code"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(vol.data.type_name(), f["dtype"].as_str().unwrap(), "{name}");
        assert_eq!(
            vol.big_endian,
            f["byteorder"] == "big",
            "{name}: byte order"
        );
        assert_eq!(
            vol.vox_offset as f64,
            f["vox_offset"].as_f64().unwrap(),
            "{name}"
        );
        let pixdim = f["pixdim"].as_array().unwrap();
        assert_eq!(vol.qfac, pixdim[0].as_f64().unwrap(), "{name}: qfac");
        for (i, p) in vol.pixdim.iter().enumerate() {
            assert_eq!(
                *p,
                pixdim[i + 1].as_f64().unwrap(),
                "{name}: pixdim[{}]",
                i + 1
            );
        }
        assert_eq!(
            vol.sform_code as i64,
            f["sform_code"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(
            vol.qform_code as i64,
            f["qform_code"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(
            vol.xyzt_units as i64,
            f["xyzt_units"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(
            vol.intent_code as i64,
            f["intent_code"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(vol.descrip, f["descrip"].as_str().unwrap(), "{name}");

        for (key, got) in [
            ("affine", &vol.affine),
            ("sform", &vol.sform),
            ("qform", &vol.qform),
        ] {
            let want = json_affine(&f[key]);
            assert!(
                affine_close(got, &want, 1e-6),
                "{name}: {key}\n{got:?}\n!=\n{want:?}"
            );
        }

        // scaling: header values exact, interpretation like get_slope_inter
        assert_eq!(
            vol.scl_slope,
            f["scl_slope_header"].as_f64().unwrap(),
            "{name}"
        );
        assert_eq!(
            vol.scl_inter,
            f["scl_inter_header"].as_f64().unwrap(),
            "{name}"
        );
        let want_scale = (
            f["slope"].as_f64().unwrap_or(1.0),
            f["inter"].as_f64().unwrap_or(0.0),
        );
        assert_eq!(
            vol.scaling().unwrap_or((1.0, 0.0)),
            want_scale,
            "{name}: scaling"
        );
        assert_eq!(vol.has_scaling(), want_scale != (1.0, 0.0), "{name}");

        // raw data, bit-exact
        let raw = vol.data.to_le_bytes();
        assert_eq!(
            raw.len() as u64,
            f["raw_nbytes"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            sha256_hex(&raw),
            f["raw_sha256"].as_str().unwrap(),
            "{name}: raw sha256"
        );

        // scaled data: statistics and fixed samples
        let scaled = vol.scaled_f32().expect("scalar data");
        assert_eq!(scaled.len(), vol.voxel_count());
        let (s, m) = vol.scaling().unwrap_or((1.0, 0.0));
        let exact: Vec<f64> = (0..vol.data.len())
            .map(|i| vol.data.get_f64(i).unwrap() * s + m)
            .collect();
        let fd = &f["fdata"];
        let sum: f64 = exact.iter().sum();
        let sum_sq: f64 = exact.iter().map(|x| x * x).sum();
        let sum32: f64 = scaled.iter().map(|&x| x as f64).sum();
        let min = scaled.iter().fold(f64::INFINITY, |a, &x| a.min(x as f64));
        let max = scaled
            .iter()
            .fold(f64::NEG_INFINITY, |a, &x| a.max(x as f64));
        assert!(
            rel_close(sum, fd["sum"].as_f64().unwrap(), 1e-9),
            "{name}: sum {sum}"
        );
        assert!(
            rel_close(sum_sq, fd["sum_sq"].as_f64().unwrap(), 1e-9),
            "{name}: sum_sq"
        );
        assert!(
            rel_close(sum32, fd["sum"].as_f64().unwrap(), 1e-4),
            "{name}: f32 sum"
        );
        assert!(
            rel_close(min, fd["min"].as_f64().unwrap(), 1e-4),
            "{name}: min {min}"
        );
        assert!(
            rel_close(max, fd["max"].as_f64().unwrap(), 1e-4),
            "{name}: max {max}"
        );

        let samples = f["samples"].as_array().unwrap();
        assert!(samples.len() >= 20, "{name}: enough samples");
        for smp in samples {
            let idx: Vec<usize> = smp["index"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            // on-disk order: first index fastest
            let mut flat = 0;
            let mut stride = 1;
            for (a, &i) in idx.iter().enumerate() {
                flat += i * stride;
                stride *= vol.dims[a];
            }
            let raw_v = vol.data.get_f64(flat).unwrap();
            assert_eq!(raw_v, smp["raw"].as_f64().unwrap(), "{name} raw at {idx:?}");
            let want = smp["scaled"].as_f64().unwrap();
            assert!(
                rel_close(scaled[flat] as f64, want, 1e-4),
                "{name} scaled at {idx:?}: {} vs {want}",
                scaled[flat]
            );
        }
    }
}

#[test]
fn big_endian_file_is_converted_to_native() {
    let vol = read_nifti(&data_dir().join("anatomical.nii")).unwrap();
    assert!(vol.big_endian);
    let VoxelData::I16(v) = &vol.data else {
        panic!("int16 expected, got {}", vol.data.type_name())
    };
    // values of a real brain are small positive numbers; swapped bytes would not be
    let max = *v.iter().max().unwrap();
    assert_eq!(max, 30393);
}

#[test]
fn gzip_is_detected_by_content_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("standard_without_gz_extension.nii");
    std::fs::copy(data_dir().join("standard.nii.gz"), &renamed).unwrap();
    let a = read_nifti(&renamed).unwrap();
    let b = read_nifti(&data_dir().join("standard.nii.gz")).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.dims, vec![4, 5, 7]);
}

#[test]
fn mni_template_reads() {
    let path = data_dir().join("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz");
    let vol = read_nifti(&path).unwrap();
    assert_eq!(vol.voxel_count(), 197 * 233 * 189);
}

/// Single-member files are inflated in one call (libdeflate); a file of several gzip members,
/// as `cat a.gz b.gz` or parallel compressors write, takes the streaming path. Both must give
/// the same volume.
#[test]
fn multi_member_gzip_reads_like_one_member() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "example4d.nii.gz",
        "example_nifti2.nii.gz",
        "standard.nii.gz",
    ] {
        let path = data_dir().join(name);
        let mut raw = vec![];
        flate2::read::MultiGzDecoder::new(&std::fs::read(&path).unwrap()[..])
            .read_to_end(&mut raw)
            .unwrap();
        let mut multi = vec![];
        for part in [&raw[..raw.len() / 3], &raw[raw.len() / 3..]] {
            let mut enc = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
            enc.write_all(part).unwrap();
            multi.extend(enc.finish().unwrap());
        }
        let split = dir.path().join(name);
        std::fs::write(&split, &multi).unwrap();
        assert_eq!(
            read_nifti(&split).unwrap(),
            read_nifti(&path).unwrap(),
            "{name}"
        );
    }
}
