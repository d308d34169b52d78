//! The memory budget (`max_bytes`) refuses a file by what its header claims, before anything
//! is allocated or inflated; the header-only reader never touches the voxels.

use std::path::{Path, PathBuf};

use crate::common::*;
use mindscan_nifti::{ReadOptions, read_nifti_header, read_nifti_with};

/// Incompressible bytes (xorshift), so a gzip of them is about as large as they are.
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A NIfTI-1 u8 `.nii.gz` whose header claims `dims` but which holds only `data` voxels.
fn claiming(dir: &Path, name: &str, dims: &[i64], data: &[u8]) -> PathBuf {
    let bytes = Craft {
        version: 1,
        big_endian: false,
        datatype: 2,
        bitpix: 8,
        dims,
        data_le: data,
        word: 1,
        slope: 0.0,
        inter: 0.0,
    }
    .bytes();
    let path = dir.join(name);
    std::fs::write(&path, gzip(&bytes)).unwrap();
    path
}

/// 256 KiB of gzip claiming 200 MiB passes the deflate-ratio guard (it could hold ~280 MB);
/// the budget must refuse it by the header's claim, naming the file, the claim and max_bytes.
#[test]
fn a_claim_over_max_bytes_is_refused_naming_the_file_the_claim_and_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = claiming(
        dir.path(),
        "bomb.nii.gz",
        &[1024, 1024, 200],
        &noise(256 << 10),
    );
    let opts = ReadOptions {
        max_bytes: Some(64 << 20),
    };
    let msg = match read_nifti_with(&path, &opts) {
        Ok(_) => panic!("a truncated 200 MiB claim was read"),
        Err(e) => e.to_string(),
    };
    assert!(msg.starts_with(&format!("{}: ", path.display())), "{msg}");
    for needle in [
        &*(200u64 << 20).to_string(),
        "max_bytes",
        &*(64u64 << 20).to_string(),
    ] {
        assert!(msg.contains(needle), "expected {needle:?} in: {msg}");
    }
}

/// The same file under a budget that allows the claim gets to inflating and finds it
/// truncated: it is the budget, not another check, that refused it above.
#[test]
fn a_claim_within_max_bytes_is_read_and_found_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = claiming(
        dir.path(),
        "short.nii.gz",
        &[1024, 1024, 200],
        &noise(256 << 10),
    );
    let opts = ReadOptions {
        max_bytes: Some(256 << 20),
    };
    let msg = match read_nifti_with(&path, &opts) {
        Ok(_) => panic!("a truncated 200 MiB claim was read"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("truncated gzip"), "{msg}");
    assert!(!msg.contains("max_bytes"), "{msg}");
}

/// A plain `.nii` is held to the budget too (before its voxels are allocated).
#[test]
fn an_uncompressed_file_over_max_bytes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = Craft {
        version: 2,
        big_endian: false,
        datatype: 16,
        bitpix: 32,
        dims: &[64, 64, 64],
        data_le: &vec![0u8; 64 * 64 * 64 * 4],
        word: 4,
        slope: 0.0,
        inter: 0.0,
    }
    .bytes();
    let path = dir.path().join("f32.nii");
    std::fs::write(&path, bytes).unwrap();
    let small = ReadOptions {
        max_bytes: Some((1 << 20) - 1),
    };
    let msg = match read_nifti_with(&path, &small) {
        Ok(_) => panic!("read 1 MiB of voxels under a budget of 1 MiB - 1"),
        Err(e) => e.to_string(),
    };
    assert!(
        msg.contains("max_bytes") && msg.contains("1048576"),
        "{msg}"
    );
    let enough = ReadOptions {
        max_bytes: Some(1 << 20),
    };
    assert_eq!(read_nifti_with(&path, &enough).unwrap().dims, [64, 64, 64]);
}

/// The header reader gives the dims of a file that claims 4 GiB but holds a few bytes.
#[test]
fn the_header_of_a_truncated_huge_volume_reads_without_its_voxels() {
    let dir = tempfile::tempdir().unwrap();
    let path = claiming(dir.path(), "huge.nii.gz", &[2048, 2048, 1024], &[7; 100]);
    let vol = read_nifti_header(&path).unwrap();
    assert_eq!(vol.dims, [2048, 2048, 1024]);
    assert_eq!(vol.data.type_name(), "uint8");
    assert!(vol.data.is_empty());
    assert_eq!(vol.affine, CRAFT_AFFINE);
}
