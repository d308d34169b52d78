//! Damaged files give an error naming the file and the reason, never a panic.

use std::path::{Path, PathBuf};

use crate::common::*;
use mindscan_nifti::read_nifti;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Read must fail; the message must name the file and contain every `needles` part.
fn expect_error(path: &Path, needles: &[&str]) -> String {
    let err = match read_nifti(path) {
        Ok(v) => panic!("{} read without error: dims {:?}", path.display(), v.dims),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{}: ", path.display())), "{msg}");
    for n in needles {
        assert!(msg.contains(n), "expected {n:?} in: {msg}");
    }
    msg
}

fn decompressed(name: &str) -> Vec<u8> {
    use std::io::Read;
    let raw = std::fs::read(data_dir().join(name)).unwrap();
    let mut out = vec![];
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn truncated_gzip_at_many_offsets() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["example4d.nii.gz", "example_nifti2.nii.gz"] {
        let full = std::fs::read(data_dir().join(name)).unwrap();
        let vol = read_nifti(&data_dir().join(name)).unwrap();
        let nbytes = vol.data.as_bytes().len();
        for cut in [
            0,
            1,
            2,
            5,
            10,
            30,
            200,
            full.len() / 4,
            full.len() / 2,
            full.len() - 9,
            full.len() - 4,
            full.len() - 1,
        ] {
            let p = write(dir.path(), &format!("cut{cut}_{name}"), &full[..cut]);
            let msg = if cut == 0 {
                expect_error(&p, &["truncated header (expected 348 bytes, got 0)"])
            } else if cut < 2 {
                expect_error(
                    &p,
                    &[&format!("truncated header (expected 348 bytes, got {cut})")],
                )
            } else if cut < 10 {
                expect_error(&p, &["gzip"])
            } else if cut >= full.len() / 4 && cut < full.len() - 9 {
                // cut inside the voxel data: the exact message of the brief
                expect_error(
                    &p,
                    &[&format!(
                        "truncated gzip stream (expected {nbytes} bytes of voxel data, got "
                    )],
                )
            } else if cut >= full.len() - 8 {
                expect_error(&p, &["gzip trailer missing"])
            } else {
                expect_error(&p, &["gzip"])
            };
            assert!(msg.contains(&format!("cut{cut}_")), "{msg}");
        }
    }
}

#[test]
fn corrupt_deflate_data_and_crc() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(data_dir().join("example4d.nii.gz")).unwrap();
    // flip bytes in the middle of the deflate stream
    let mut bad = full.clone();
    for i in 0..64 {
        bad[full.len() / 2 + i] ^= 0xa5;
    }
    let p = write(dir.path(), "flipped.nii.gz", &bad);
    expect_error(&p, &["gzip stream"]);
    // a wrong CRC in the trailer: all data present, stream still rejected
    let mut bad = full.clone();
    let n = bad.len();
    bad[n - 8] ^= 0xff;
    let p = write(dir.path(), "badcrc.nii.gz", &bad);
    expect_error(
        &p,
        &[
            "corrupt gzip stream",
            "after all 1179648 bytes of voxel data",
        ],
    );
    // a broken gzip header (bad compression method)
    let mut bad = full.clone();
    bad[2] = 7;
    let p = write(dir.path(), "badmethod.nii.gz", &bad);
    expect_error(&p, &["corrupt gzip stream"]);
}

#[test]
fn header_damage_in_uncompressed_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(data_dir().join("functional.nii")).unwrap(); // little-endian
    let be = std::fs::read(data_dir().join("anatomical.nii")).unwrap(); // big-endian
    let n2 = decompressed("example_nifti2.nii.gz");

    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "empty.nii",
            vec![],
            vec!["truncated header (expected 348 bytes, got 0)"],
        ),
        (
            "tiny.nii",
            good[..3].to_vec(),
            vec!["truncated header (expected 348 bytes, got 3)"],
        ),
        (
            "short_hdr.nii",
            good[..200].to_vec(),
            vec!["truncated header (expected 348 bytes, got 200)"],
        ),
        (
            "short_hdr2.nii",
            n2[..300].to_vec(),
            vec!["truncated header (expected 540 bytes, got 300)"],
        ),
        (
            "sizeof.nii",
            patch(&good, 0, &999i32.to_le_bytes()),
            vec!["sizeof_hdr is 999"],
        ),
        (
            "text.nii",
            b"hello world, this is not a NIfTI file at all".repeat(10),
            vec!["not a NIfTI file"],
        ),
        (
            "magic.nii",
            patch(&good, 344, b"xyz\0"),
            vec!["bad magic", "NIfTI-1"],
        ),
        (
            "magic2.nii",
            patch(&n2, 4, b"n+9\0"),
            vec!["bad magic", "NIfTI-2"],
        ),
        (
            "pair.nii",
            patch(&good, 344, b"ni1\0"),
            vec!["pair", "not supported"],
        ),
        (
            "dim0.nii",
            patch(&good, 40, &0i16.to_le_bytes()),
            vec!["invalid dims", "dim[0] = 0"],
        ),
        (
            "dim0_big.nii",
            patch(&good, 40, &9i16.to_le_bytes()),
            vec!["dim[0]"],
        ),
        (
            "dim_neg.nii",
            patch(&good, 42, &(-5i16).to_le_bytes()),
            vec!["invalid dims", "dim[1] = -5"],
        ),
        (
            "dim_zero_be.nii",
            patch(&be, 44, &0i16.to_be_bytes()),
            vec!["invalid dims", "dim[2] = 0"],
        ),
        (
            "dim_n2.nii",
            patch(&n2, 24, &(-1i64).to_le_bytes()),
            vec!["invalid dims", "dim[1] = -1"],
        ),
        (
            "dim_overflow.nii",
            patch(&n2, 24, &(i64::MAX / 2).to_le_bytes()),
            vec!["invalid dims", "overflows"],
        ),
        (
            "dtype.nii",
            patch(&good, 70, &999i16.to_le_bytes()),
            vec!["unsupported datatype code 999"],
        ),
        (
            "offset.nii",
            patch(&good, 108, &100f32.to_le_bytes()),
            vec!["vox_offset 100 lies inside the header"],
        ),
        (
            "offset_nan.nii",
            patch(&good, 108, &f32::NAN.to_le_bytes()),
            vec!["invalid vox_offset"],
        ),
        // dims larger than the file: 17x21x3x20 -> 17x21x3x2000
        (
            "dims_too_big.nii",
            patch(&good, 48, &2000i16.to_le_bytes()),
            vec!["voxel data shorter than dims require (expected 4284000 bytes, got 42840)"],
        ),
    ];
    for (name, bytes, needles) in &cases {
        let p = write(dir.path(), name, bytes);
        expect_error(&p, needles);
    }
}

fn patch(src: &[u8], off: usize, b: &[u8]) -> Vec<u8> {
    let mut v = src.to_vec();
    v[off..off + b.len()].copy_from_slice(b);
    v
}

#[test]
fn truncated_uncompressed_data() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["functional.nii", "anatomical.nii"] {
        let full = std::fs::read(data_dir().join(name)).unwrap();
        let vol = read_nifti(&data_dir().join(name)).unwrap();
        let nbytes = vol.data.as_bytes().len();
        for keep in [352, 353, 1000, full.len() - 1] {
            let p = write(dir.path(), &format!("t{keep}_{name}"), &full[..keep]);
            expect_error(
                &p,
                &[&format!(
                    "voxel data shorter than dims require (expected {nbytes} bytes, got {})",
                    keep - 352
                )],
            );
        }
    }
}

#[test]
fn nonsense_dims_in_small_gzip_are_rejected_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let mut hdr = decompressed("standard.nii.gz");
    // 30000^3 uint8 voxels (27 TB) claimed by a ~150-byte file
    for i in 0..3 {
        hdr[42 + 2 * i..44 + 2 * i].copy_from_slice(&30000i16.to_le_bytes());
    }
    let p = write(dir.path(), "huge.nii.gz", &gzip(&hdr));
    expect_error(&p, &["invalid dims", "cannot hold"]);
    // plausible dims, but the stream ends early: reported as truncated data
    let mut hdr = decompressed("standard.nii.gz");
    hdr[42..44].copy_from_slice(&40i16.to_le_bytes()); // 4 -> 40 columns
    let p = write(dir.path(), "short.nii.gz", &gzip(&hdr));
    expect_error(
        &p,
        &["truncated gzip stream (expected 1400 bytes of voxel data, got 140)"],
    );
}

#[test]
fn missing_file() {
    let p = Path::new("/nonexistent/dir/file.nii.gz");
    expect_error(p, &["cannot open"]);
}

/// Every single-byte change and every truncation of a small header must not panic.
#[test]
fn never_panics_on_mutated_headers() {
    let dir = fast_tempdir();
    let sources = [
        decompressed("standard.nii.gz"),
        decompressed("example_nifti2.nii.gz")[..544 + 200].to_vec(),
        std::fs::read(data_dir().join("anatomical.nii")).unwrap()[..352 + 100].to_vec(),
    ];
    let p = dir.path().join("m.nii");
    let mut errors = 0;
    let mut total = 0;
    for src in &sources {
        let hlen = if src.len() > 600 { 544 } else { 352 };
        for off in 0..hlen {
            for val in [0x00u8, 0xff, 0x80, 0x7f, 0x01] {
                let mut m = src.clone();
                m[off] = val;
                std::fs::write(&p, &m).unwrap();
                total += 1;
                if let Err(e) = read_nifti(&p) {
                    errors += 1;
                    assert!(e.to_string().contains("m.nii"));
                }
            }
        }
        for cut in (0..src.len()).step_by(7) {
            std::fs::write(&p, &src[..cut]).unwrap();
            total += 1;
            let e = read_nifti(&p).expect_err("truncated file must not load");
            assert!(e.to_string().contains("m.nii"));
            errors += 1;
        }
    }
    // many mutations hit unused fields and still load; many must fail
    assert!(errors > 0 && errors < total, "{errors} of {total}");
}
