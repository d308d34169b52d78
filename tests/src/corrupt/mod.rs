//! The corrupt-input corpus: damaged copies of the real files in `tests/data`, made
//! deterministically (fixed seeds, no clock), and a runner that drives the real binary over each
//! case under a deadline, watching peak memory and every file it writes.
//!
//! Generation is pure: `(source bytes, family, parameters) -> bytes`. The e2e test
//! (`tests/e2e/corrupt.rs`) writes each case into its own folder and checks the outcome.

// Test-corpus generator code: kept close to the byte layouts it writes.
#![allow(
    clippy::collapsible_if,
    clippy::manual_contains,
    clippy::type_complexity,
    clippy::should_implement_trait
)]
use std::io::{Read, Write};

mod dicom;
mod nifti;
mod run;

pub use dicom::*;
pub use nifti::*;
pub use run::*;

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/// xorshift64*: the only source of "randomness" in the corpus, always from a fixed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// gzip

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a source .gz inflates");
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A gzip stream of `header` followed by `zeros` zero bytes, compressed in 1 MiB chunks (so a
/// gigabyte of zeros costs a megabyte of memory and about a megabyte of file).
pub fn gzip_with_zeros(header: &[u8], zeros: u64) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(header).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        enc.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    enc.finish().unwrap()
}
