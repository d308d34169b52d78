//! Element-wise kernels (exp, SiLU, affine, softmax, channel sums), written as plain loops that
//! LLVM vectorises, each compiled three times (AVX-512, AVX2 + FMA, baseline) and chosen at run
//! time: a binary built for plain x86-64 would otherwise run them on SSE2.

use std::sync::OnceLock;

/// The widest instruction set this CPU offers among those the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Tests set this to run the portable paths (the `gemm` crate and the baseline loops).
#[cfg(test)]
pub(crate) static FORCE_BASELINE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Whether to take the portable paths although the CPU has better (tests only).
#[inline]
pub(crate) fn forced_baseline() -> bool {
    #[cfg(test)]
    return FORCE_BASELINE.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(test))]
    false
}

/// The level the dispatched kernels use: the CPU's, unless a test forces the baseline.
pub(crate) fn dispatch_level() -> Level {
    if forced_baseline() {
        Level::Baseline
    } else {
        level()
    }
}

pub(crate) fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                return Level::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Level::Avx2;
            }
        }
        Level::Baseline
    })
}

/// `$vis fn $name(args)` that runs the `#[inline(always)]` function `$body` compiled for the
/// best available instruction set.
macro_rules! dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
                fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn narrow($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                match $crate::unet::layers::simd::dispatch_level() {
                    // SAFETY: the CPU has the features these were compiled for (checked in `level`).
                    $crate::unet::layers::simd::Level::Avx512 => return unsafe { wide($($arg),*) },
                    // SAFETY: as above.
                    $crate::unet::layers::simd::Level::Avx2 => return unsafe { narrow($($arg),*) },
                    $crate::unet::layers::simd::Level::Baseline => {}
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use dispatch;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that `k * LN2_HI` is exact for the k that occur.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
const ROUNDER: f32 = 12_582_912.0;

/// e^x to about one ulp, branch-free so that it vectorises: x = k ln2 + r with |r| <= ln2 / 2,
/// e^r by its Taylor polynomial to degree 7 (error below 1e-8), times 2^k built in the exponent
/// bits. Inputs are clamped to the range where the result is a normal float.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUNDER;
    let k = shifted - ROUNDER;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0 / 5040.0 + r * (1.0 / 40320.0);
    let p = 1.0 / 720.0 + r * p;
    let p = 1.0 / 120.0 + r * p;
    let p = 1.0 / 24.0 + r * p;
    let p = 1.0 / 6.0 + r * p;
    let p = 0.5 + r * p;
    let p = 1.0 + r * p;
    let p = 1.0 + r * p;
    let k_int = shifted.to_bits() as i32 - ROUNDER.to_bits() as i32;
    p * f32::from_bits(((k_int + 127) << 23) as u32)
}

/// x * sigmoid(x).
#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

#[inline(always)]
fn silu_in_place_body(values: &mut [f32]) {
    for v in values {
        *v = silu(*v);
    }
}

dispatch! {
    /// `values = silu(values)`.
    pub(crate) fn silu_in_place(values: &mut [f32]) => silu_in_place_body
}

#[inline(always)]
fn add_body(a: &[f32], b: &[f32], dst: &mut [f32]) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d = x + y;
    }
}

dispatch! {
    /// `dst = a + b`, element-wise.
    pub(crate) fn add(a: &[f32], b: &[f32], dst: &mut [f32]) => add_body
}

/// Lanes of the partial maxima and sums: floating-point reductions only vectorise when the
/// order of the additions is spelled out.
const LANES: usize = 16;

#[inline(always)]
fn softmax_body(row: &mut [f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut max = lanes
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for &v in chunks.remainder() {
        max = if v > max { v } else { max };
    }
    let mut sums = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (s, v) in sums.iter_mut().zip(chunk) {
            *v = exp(*v - max);
            *s += *v;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    sum
}

dispatch! {
    /// Replaces `row` by `exp(row - max(row))` and returns its sum (the softmax is that over
    /// the sum; the caller divides later, where there are fewer values).
    pub(crate) fn softmax_unnormalised(row: &mut [f32]) -> f32 => softmax_body
}

#[inline(always)]
fn shifted_sums_body(pixels: &[f32], shift: &[f32], sum: &mut [f32], sum_sq: &mut [f32]) {
    let c = shift.len();
    for px in pixels.chunks_exact(c) {
        for (((s, q), &x), &o) in sum.iter_mut().zip(sum_sq.iter_mut()).zip(px).zip(shift) {
            let d = x - o;
            *s += d;
            *q += d * d;
        }
    }
}

dispatch! {
    /// Per channel, adds `x - shift` and its square over the pixels (pixel-major, `shift.len()`
    /// channels each) to `sum` and `sum_sq`.
    pub(crate) fn shifted_sums(pixels: &[f32], shift: &[f32], sum: &mut [f32], sum_sq: &mut [f32]) => shifted_sums_body
}

#[inline(always)]
fn scale_body(values: &mut [f32], factor: f32) {
    for v in values {
        *v *= factor;
    }
}

dispatch! {
    /// `values *= factor`.
    pub(crate) fn scale(values: &mut [f32], factor: f32) => scale_body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::layers::tensor::testing::on_both_paths;

    #[test]
    fn exp_is_within_two_ulp_over_the_useful_range() {
        let mut worst = 0.0f64;
        for i in -87_000..88_000 {
            let x = i as f32 * 1e-3 + 0.000_37;
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
    }

    #[test]
    fn exp_saturates_instead_of_overflowing() {
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 1e38);
        assert!(exp(-1000.0) >= 0.0 && exp(-1000.0) < 1e-37);
    }

    #[test]
    fn every_dispatched_kernel_matches_its_plain_formula() {
        on_both_paths(|| {
            let src: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.7).collect();
            let mut out = src.clone();
            silu_in_place(&mut out);
            for i in 0..37 {
                let y = src[i] as f64;
                let want = y / (1.0 + (-y).exp());
                assert!(
                    (out[i] as f64 - want).abs() <= 1e-6 * want.abs().max(1e-3),
                    "{i}"
                );
            }
            let mut row = src.clone();
            let sum = softmax_unnormalised(&mut row);
            let max = src.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let want: f64 = src.iter().map(|&v| (v as f64 - max).exp()).sum();
            assert!((sum as f64 - want).abs() < 1e-5 * want);
            let (mut s, mut q) = (vec![0.0; 1], vec![0.0; 1]);
            shifted_sums(&src, &[1.0], &mut s, &mut q);
            let want: f32 = src.iter().map(|v| v - 1.0).sum();
            assert!((s[0] - want).abs() < 1e-4);
        });
    }
}
