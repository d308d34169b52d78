//! Counter-based randomness: Philox4x32-10 keyed by the item's seed, with the counter built from
//! (variant, transform slot, purpose, index). Any number can be recomputed from its address
//! alone, so a voxel's noise is the same on any thread, worker count or device.
//!
//! The float conversions and the math used on the numbers (`ln`, `sincos_turns`) are written out
//! here in plain IEEE f32 operations, and `kernels/philox.cuh` repeats them operation for
//! operation: with NVRTC's `--fmad=false` the CUDA side gives the same bits.

use rand_philox::philox4x32_10;

/// What a block of random numbers is for; part of the counter so streams never overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Purpose {
    /// Parameter draws (angles, scales, which transform of a `one_of` ...).
    Draw = 1,
    /// Per-voxel Gaussian noise, first stream.
    Noise = 2,
    /// Second independent per-voxel stream (Rician noise's imaginary part).
    NoiseB = 3,
    /// Elastic control-point displacements.
    Field = 4,
    /// Patch positions (swap) and other per-transform lists.
    List = 5,
    /// Diffusion: the starting noise x_T of a sample, or the forward process's ε.
    Start = 6,
    /// Diffusion: the noise added by one reverse step (DDPM, DDIM with eta > 0); the slot is
    /// the step's timestep.
    Step = 7,
}

/// `kernels/philox.cuh`: the CUDA twin of this crate, for kernels to prepend to their source.
pub const PHILOX_CUH: &str = include_str!("../kernels/philox.cuh");

/// The address of one Philox stream: key from the seed, the high counter words from the
/// variant, transform slot and purpose. Block `n` of the stream is `philox(ctr=[n_lo, n_hi,
/// variant, slot << 8 | purpose], key)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    pub key: [u32; 2],
    pub variant: u32,
    pub tag: u32,
}

impl Stream {
    pub fn new(seed: u64, variant: u32, slot: u32, purpose: Purpose) -> Stream {
        Stream {
            key: [seed as u32, (seed >> 32) as u32],
            variant,
            tag: (slot << 8) | purpose as u32,
        }
    }

    /// Four random words of block `n`.
    #[inline(always)]
    pub fn block(&self, n: u64) -> [u32; 4] {
        philox4x32_10(
            [n as u32, (n >> 32) as u32, self.variant, self.tag],
            self.key,
        )
    }

    /// Four standard normal numbers of block `n` (two Box–Muller pairs).
    #[inline(always)]
    pub fn normal4(&self, n: u64) -> [f32; 4] {
        let w = self.block(n);
        let (a, b) = box_muller(w[0], w[1]);
        let (c, d) = box_muller(w[2], w[3]);
        [a, b, c, d]
    }

    /// A sequential reader of this stream, for parameter draws.
    pub fn reader(self) -> Draws {
        Draws {
            stream: self,
            next: 0,
            buf: [0; 4],
            used: 4,
        }
    }
}

/// Sequential draws from one stream (words in block order).
#[derive(Clone, Debug)]
pub struct Draws {
    stream: Stream,
    next: u64,
    buf: [u32; 4],
    used: usize,
}

impl Draws {
    pub fn word(&mut self) -> u32 {
        if self.used == 4 {
            self.buf = self.stream.block(self.next);
            self.next += 1;
            self.used = 0;
        }
        self.used += 1;
        self.buf[self.used - 1]
    }

    /// Uniform in [0, 1) with 53 random bits (parameters are drawn in f64).
    pub fn unit(&mut self) -> f64 {
        let hi = (self.word() >> 5) as u64;
        let lo = (self.word() >> 6) as u64;
        ((hi << 26) | lo) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi) (or `lo` when the range is empty).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `0..n` (n > 0), without modulo bias.
    pub fn below(&mut self, n: u32) -> u32 {
        assert!(n > 0, "below(0)");
        let zone = u32::MAX - (u32::MAX - n + 1) % n;
        loop {
            let w = self.word();
            if w <= zone {
                return w % n;
            }
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p >= 1.0 || self.unit() < p
    }
}

/// Uniform in [0, 1) from the top 24 bits (exact in f32).
#[inline(always)]
pub fn unit_f32(w: u32) -> f32 {
    (w >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Box–Muller: two words → two independent standard normals.
#[inline(always)]
pub fn box_muller(w0: u32, w1: u32) -> (f32, f32) {
    // u1 in (0, 1]: never log(0).
    let u1 = ((w0 >> 8) + 1) as f32 * (1.0 / 16_777_216.0);
    let r = (-2.0 * ln(u1)).sqrt();
    let (s, c) = sincos_turns(unit_f32(w1));
    (r * c, r * s)
}

/// Natural logarithm of a positive, finite, normal f32; written in basic operations so the CUDA
/// twin gives the same bits (relative error below 2e-7).
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000); // [1, 2)
    if m > std::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0); // |s| < 0.172
    let s2 = s * s;
    let p = 1.0 / 9.0;
    let p = p * s2 + 1.0 / 7.0;
    let p = p * s2 + 1.0 / 5.0;
    let p = p * s2 + 1.0 / 3.0;
    let p = p * s2 + 1.0;
    e as f32 * std::f32::consts::LN_2 + 2.0 * s * p
}

/// (sin, cos) of `2π·t` for t in [0, 1), by quadrant reduction and short Taylor series
/// (absolute error below 1e-7).
#[inline(always)]
pub fn sincos_turns(t: f32) -> (f32, f32) {
    let q = (t * 4.0 + 0.5) as i32; // nearest quarter turn, 0..=4
    let r = (t - q as f32 * 0.25) * std::f32::consts::TAU; // [-π/4, π/4]
    let r2 = r * r;
    let s =
        r * (1.0 + r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 / 362_880.0))));
    let c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40_320.0))));
    // Quadrant q: (sin, cos) = (s, c), (c, -s), (-s, -c), (-c, s), written as selects and sign
    // flips (exact) so that loops over many angles vectorise.
    let (a, b) = if q & 1 == 1 { (c, s) } else { (s, c) };
    let sa = if q & 2 == 2 { -a } else { a };
    let sb = if (q + 1) & 2 == 2 { -b } else { b };
    (sa, sb)
}

/// Standard normals of blocks `first_block..` of `stream`, four per block, into `out` (its
/// length a multiple of 4): the same numbers as [`Stream::normal4`], many blocks at a time
/// (Philox in SIMD lanes, then Box–Muller over plain arrays).
pub fn fill_normals(stream: &Stream, first_block: u64, words: &mut Vec<u32>, out: &mut [f32]) {
    debug_assert!(out.len().is_multiple_of(4));
    words.resize(out.len(), 0);
    let counter = first_block as u128 | (stream.variant as u128) << 64 | (stream.tag as u128) << 96;
    rand_philox::Philox::new(stream.key, counter).fill_u32(words);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked above).
        unsafe { box_muller_avx2(words, out) };
        return;
    }
    box_muller_all(words, out);
}

/// Box–Muller over pairs of words. Plain IEEE operations only (Rust never fuses them), so the
/// AVX2 build of this loop gives the same bits as the baseline one.
#[inline(always)]
fn box_muller_all(words: &[u32], out: &mut [f32]) {
    for (o, w) in out.chunks_exact_mut(2).zip(words.chunks_exact(2)) {
        let (a, b) = box_muller(w[0], w[1]);
        o[0] = a;
        o[1] = b;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn box_muller_avx2(words: &[u32], out: &mut [f32]) {
    box_muller_all(words, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three known-answer vectors of Random123 (kat_vectors, philox4x32_10).
    #[test]
    fn philox_matches_the_random123_known_answers() {
        let cases: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
            (
                [0; 4],
                [0; 2],
                [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
            ),
            (
                [u32::MAX; 4],
                [u32::MAX; 2],
                [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
            ),
            (
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0],
                [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
            ),
        ];
        for (ctr, key, want) in cases {
            assert_eq!(philox4x32_10(ctr, key), want);
        }
    }

    #[test]
    fn streams_with_different_addresses_differ() {
        let a = Stream::new(7, 0, 1, Purpose::Noise).block(0);
        assert_ne!(a, Stream::new(7, 1, 1, Purpose::Noise).block(0));
        assert_ne!(a, Stream::new(7, 0, 2, Purpose::Noise).block(0));
        assert_ne!(a, Stream::new(7, 0, 1, Purpose::NoiseB).block(0));
        assert_ne!(a, Stream::new(8, 0, 1, Purpose::Noise).block(0));
        assert_eq!(a, Stream::new(7, 0, 1, Purpose::Noise).block(0));
    }

    #[test]
    fn ln_and_sincos_are_accurate() {
        let mut x = 1e-7f32;
        while x < 1.0 {
            let want = (x as f64).ln();
            assert!(
                ((ln(x) as f64 - want) / want.abs().max(1e-30)).abs() < 3e-7,
                "ln({x})"
            );
            x *= 1.013;
        }
        for i in 0..4096 {
            let t = i as f32 / 4096.0;
            let (s, c) = sincos_turns(t);
            let a = t as f64 * std::f64::consts::TAU;
            assert!((s as f64 - a.sin()).abs() < 2e-7 && (c as f64 - a.cos()).abs() < 2e-7);
        }
    }

    #[test]
    fn many_blocks_at_once_give_the_same_normals_as_one_block_at_a_time() {
        let s = Stream::new(0xdead_beef_1234, 7, 3, Purpose::Noise);
        let mut words = Vec::new();
        let mut out = vec![0f32; 4 * 1000];
        fill_normals(&s, 123_456, &mut words, &mut out);
        for b in 0..1000u64 {
            let want = s.normal4(123_456 + b);
            for l in 0..4 {
                assert_eq!(out[4 * b as usize + l].to_bits(), want[l].to_bits());
            }
        }
    }

    #[test]
    fn normals_have_unit_variance_and_zero_mean() {
        let s = Stream::new(42, 3, 0, Purpose::Noise);
        let (mut sum, mut sq, n) = (0f64, 0f64, 200_000u64);
        for b in 0..n / 4 {
            for z in s.normal4(b) {
                sum += z as f64;
                sq += (z as f64) * (z as f64);
            }
        }
        let mean = sum / n as f64;
        let var = sq / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
    }

    #[test]
    fn draws_are_uniform_and_unbiased() {
        let mut d = Stream::new(1, 0, 0, Purpose::Draw).reader();
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[d.below(3) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
        let u: f64 = (0..10_000).map(|_| d.unit()).sum::<f64>() / 10_000.0;
        assert!((u - 0.5).abs() < 0.01);
    }
}
