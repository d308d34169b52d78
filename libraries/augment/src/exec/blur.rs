//! Gaussian blur, TorchIO `Blur` (`transforms/augmentation/intensity/random_blur.py`, function
//! `blur`): the standard deviations in mm are divided by the voxel spacing and handed to
//! `scipy.ndimage.gaussian_filter` with its defaults, which this file reproduces:
//!
//! - kernel `exp(-x² / 2σ²)` for `x` in `-r..=r`, `r = int(4·σ + 0.5)` (`truncate = 4.0`),
//!   normalised to sum 1 (computed in f64);
//! - boundary `mode = 'reflect'`: `d c b a | a b c d | d c b a` (the edge voxel repeated),
//!   periodic with period `2n` when the kernel is wider than the line;
//! - one 1D pass per axis whose σ in voxels is above `1e-15`; an axis with σ = 0 is left alone.
//!
//! Differences: scipy accumulates in f64 (centre first, then the pairs from the outside in) and
//! rounds to f32 after each pass; here each pass accumulates in f32 (centre, then the pairs
//! from the inside out), 16 voxels at a time, and rounds to f32 after each pass as well: the
//! same linear filter, within f32 rounding (~3e-7 of the maximum on the fixtures).
//! [`blur_reference`] is scipy's arithmetic and gives TorchIO's bits. An axis one voxel long is
//! skipped (scipy multiplies it by the kernel sum, 1 up to rounding).
//!
//! Speed: two sweeps over memory, both on contiguous rows so the inner loops vectorise (AVX2
//! when the CPU has it, with the same bits as SSE2): the i and j passes slab by slab (a slab
//! fits in L2), then the k pass pencil by pencil (the rows `(j, 0..nk)` of one j, copied to a
//! scratch that fits in L2, so every voxel comes from memory once per pass).

use rayon::prelude::*;

use crate::exec::kspace::row_groups;
use crate::volume::Volume;

/// scipy's `truncate`: the kernel reaches 4 standard deviations.
const TRUNCATE: f64 = 4.0;

/// Blurs `vol` in place with a Gaussian of standard deviation `std_mm[a]` mm along array axis
/// `a` (converted to voxels with [`Volume::spacing`]). `std_mm[a] = 0` leaves axis `a` alone.
pub fn blur(vol: &mut Volume, std_mm: [f64; 3]) {
    let spacing = vol.spacing();
    let kernels: [Option<Vec<f32>>; 3] = std::array::from_fn(|a| {
        let sigma = std_mm[a].abs() / spacing[a];
        (sigma > 1e-15 && vol.dims[a] > 1).then(|| gaussian_kernel(sigma))
    });
    blur_voxels(&mut vol.data, vol.dims, &kernels);
}

/// scipy's `_gaussian_kernel1d(sigma, 0, radius)` with `radius = int(truncate·σ + 0.5)`,
/// rounded to f32.
pub fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    gaussian_kernel_f64(sigma)
        .iter()
        .map(|&w| w as f32)
        .collect()
}

/// The kernel in f64 as scipy computes it: `exp(-0.5 / σ² · x²)` over `x = -r..=r`, divided by
/// its sum (numpy's pairwise summation).
pub fn gaussian_kernel_f64(sigma: f64) -> Vec<f64> {
    let radius = (TRUNCATE * sigma + 0.5) as i64;
    let s2 = sigma * sigma;
    let phi: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 / s2 * (x * x) as f64).exp())
        .collect();
    let sum = numpy_sum(&phi);
    phi.iter().map(|p| p / sum).collect()
}

/// numpy's pairwise sum of a contiguous f64 array (`pairwise_sum`, blocks of 8 partial sums).
fn numpy_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |s, v| s + v)
    } else if n <= 128 {
        let mut r = [0f64; 8];
        r.copy_from_slice(&a[..8]);
        let full = n - n % 8;
        for c in a[8..full].chunks_exact(8) {
            for (x, v) in r.iter_mut().zip(c) {
                *x += v;
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for v in &a[full..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum(&a[..n2]) + numpy_sum(&a[n2..])
    }
}

/// scipy's `reflect` extension: index `p` of the infinitely extended line of length `n`.
#[inline]
pub fn reflect(p: isize, n: usize) -> usize {
    let n2 = 2 * n as isize;
    let m = p.rem_euclid(n2);
    if m >= n as isize {
        (n2 - 1 - m) as usize
    } else {
        m as usize
    }
}

/// Blurs `data` (`dims`, i fastest) in place with the given 1D kernels (odd length, centred),
/// `None` meaning no pass along that axis.
pub fn blur_voxels(data: &mut [f32], dims: [usize; 3], kernels: &[Option<Vec<f32>>; 3]) {
    let [ni, nj, nk] = dims;
    let (ki, kj) = (kernels[0].as_deref(), kernels[1].as_deref());
    if ki.is_some() || kj.is_some() {
        // At least 8 slabs per job: the scratch is allocated (and paged in) once per job.
        data.par_chunks_mut(ni * nj).with_min_len(8).for_each_init(
            || SlabScratch {
                a: vec![0.0; ni * nj],
                pad: Vec::new(),
                row: vec![0.0; ni],
                taps: Vec::new(),
            },
            |s, slab| slab_pass(slab, s, ni, nj, ki, kj),
        );
    }
    if let Some(kk) = kernels[2].as_deref() {
        // The lines along k of one j lie in the rows (j, 0..nk): a pencil that fits in L2.
        row_groups(data, dims, 2, 1)
            .into_par_iter()
            .with_min_len(8)
            .for_each_init(
                || (vec![0f32; nk * ni], Vec::new()),
                |(src, taps), (_, mut rows)| pencil_pass(&mut rows, src, taps, ni, nk, kk),
            );
    }
}

struct SlabScratch {
    /// The slab after the i pass.
    a: Vec<f32>,
    /// One reflected row.
    pad: Vec<f32>,
    /// One output row.
    row: Vec<f32>,
    /// Row offsets of the j taps.
    taps: Vec<usize>,
}

/// The i and j passes of one slab, in place.
fn slab_pass(
    slab: &mut [f32],
    s: &mut SlabScratch,
    ni: usize,
    nj: usize,
    ki: Option<&[f32]>,
    kj: Option<&[f32]>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, the only feature `slab_pass_avx2` is compiled for.
        return unsafe { slab_pass_avx2(slab, s, ni, nj, ki, kj) };
    }
    slab_pass_body(slab, s, ni, nj, ki, kj)
}

/// [`slab_pass`] compiled for AVX2: 8 lanes instead of SSE2's 4, the same operations in the same
/// order (Rust never fuses a multiply and an add), so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn slab_pass_avx2(
    slab: &mut [f32],
    s: &mut SlabScratch,
    ni: usize,
    nj: usize,
    ki: Option<&[f32]>,
    kj: Option<&[f32]>,
) {
    slab_pass_body(slab, s, ni, nj, ki, kj)
}

#[inline(always)]
fn slab_pass_body(
    slab: &mut [f32],
    s: &mut SlabScratch,
    ni: usize,
    nj: usize,
    ki: Option<&[f32]>,
    kj: Option<&[f32]>,
) {
    match (ki, kj) {
        (Some(w), None) => {
            for line in slab.chunks_mut(ni) {
                filter_row(line, &mut s.pad, &mut s.row, w);
                line.copy_from_slice(&s.row);
            }
        }
        (ki, Some(w)) => {
            match ki {
                Some(wi) => {
                    for (line, out) in slab.chunks(ni).zip(s.a.chunks_mut(ni)) {
                        filter_row(line, &mut s.pad, out, wi);
                    }
                }
                None => s.a.copy_from_slice(slab),
            }
            let r = w.len() / 2;
            let a = &s.a[..];
            for (j, out) in slab.chunks_mut(ni).enumerate() {
                s.taps.clear();
                s.taps.extend(
                    (0..w.len()).map(|t| reflect(j as isize + t as isize - r as isize, nj) * ni),
                );
                let taps = &s.taps;
                symmetric_sum(out, w, |t| &a[taps[t]..][..ni]);
            }
        }
        (None, None) => {}
    }
}

/// The k pass of the rows `(j, 0..nk)` of one j, in place (the originals copied to `src`).
fn pencil_pass(
    rows: &mut [&mut [f32]],
    src: &mut [f32],
    taps: &mut Vec<usize>,
    ni: usize,
    nk: usize,
    w: &[f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, the only feature `pencil_pass_avx2` is compiled for.
        return unsafe { pencil_pass_avx2(rows, src, taps, ni, nk, w) };
    }
    pencil_pass_body(rows, src, taps, ni, nk, w)
}

/// [`pencil_pass`] compiled for AVX2 (same bits, see [`slab_pass_avx2`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn pencil_pass_avx2(
    rows: &mut [&mut [f32]],
    src: &mut [f32],
    taps: &mut Vec<usize>,
    ni: usize,
    nk: usize,
    w: &[f32],
) {
    pencil_pass_body(rows, src, taps, ni, nk, w)
}

#[inline(always)]
fn pencil_pass_body(
    rows: &mut [&mut [f32]],
    src: &mut [f32],
    taps: &mut Vec<usize>,
    ni: usize,
    nk: usize,
    w: &[f32],
) {
    for (row, s) in rows.iter().zip(src.chunks_mut(ni)) {
        s.copy_from_slice(row);
    }
    let r = w.len() / 2;
    let src = &*src;
    for (k, out) in rows.iter_mut().enumerate() {
        taps.clear();
        taps.extend((0..w.len()).map(|t| reflect(k as isize + t as isize - r as isize, nk) * ni));
        let taps = &*taps;
        symmetric_sum(out, w, |t| &src[taps[t]..][..ni]);
    }
}

/// `out[x] = w[r]·tap(r)[x] + Σ_{t=1..=r} w[r+t]·(tap(r-t)[x] + tap(r+t)[x])` for a symmetric
/// kernel `w` of `2r + 1` taps: one sweep of the (L1-resident) output row per pair of taps, so
/// the loops vectorise without bounds checks.
#[inline(always)]
fn symmetric_sum<'a>(out: &mut [f32], w: &[f32], tap: impl Fn(usize) -> &'a [f32]) {
    let r = w.len() / 2;
    for (o, &v) in out.iter_mut().zip(tap(r)) {
        *o = w[r] * v;
    }
    for t in 1..=r {
        let (lo, hi, wt) = (tap(r - t), tap(r + t), w[r + t]);
        for ((o, &l), &h) in out.iter_mut().zip(lo).zip(hi) {
            *o += wt * (l + h);
        }
    }
}

/// One row along i: reflected into `pad`, filtered into `out`.
#[inline(always)]
fn filter_row(line: &[f32], pad: &mut Vec<f32>, out: &mut [f32], w: &[f32]) {
    let n = line.len();
    let r = w.len() / 2;
    pad.clear();
    pad.extend((0..r).map(|t| line[reflect(t as isize - r as isize, n)]));
    pad.extend_from_slice(line);
    pad.extend((0..r).map(|t| line[reflect((n + t) as isize, n)]));
    let pad = &*pad;
    symmetric_sum(out, w, |t| &pad[t..t + n]);
}

/// The definition, for tests: scipy's `gaussian_filter` as it computes it (three passes in axis
/// order, each `correlate1d`'s symmetric sum in f64, centre first then the pairs from the outside
/// in, rounded to f32 after each pass), which gives TorchIO's bits.
pub fn blur_reference(vol: &Volume, std_mm: [f64; 3]) -> Vec<f32> {
    let spacing = vol.spacing();
    let [ni, nj, nk] = vol.dims;
    let mut cur = vol.data.clone();
    for a in 0..3 {
        let sigma = std_mm[a].abs() / spacing[a];
        if sigma <= 1e-15 {
            continue;
        }
        let w = gaussian_kernel_f64(sigma);
        let radius = (w.len() / 2) as i64;
        let n = vol.dims[a];
        let stride = [1, ni, ni * nj][a];
        let mut next = vec![0f32; cur.len()];
        for k in 0..nk {
            for j in 0..nj {
                for i in 0..ni {
                    let at = [i, j, k][a];
                    let base = i + ni * (j + nj * k) - at * stride;
                    // scipy's symmetric correlate1d: centre, then the pairs from the outside in.
                    let at_ = |t: isize| cur[base + reflect(at as isize + t, n) * stride] as f64;
                    let mut v = at_(0) * w[radius as usize];
                    for t in (1..=radius as isize).rev() {
                        v += (at_(-t) + at_(t)) * w[(radius as isize + t) as usize];
                    }
                    next[i + ni * (j + nj * k)] = v as f32;
                }
            }
        }
        cur = next;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_repeats_the_edge_and_wraps_with_period_2n() {
        let got: Vec<usize> = (-5..8).map(|p| reflect(p, 3)).collect();
        assert_eq!(got, [1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1]);
    }

    #[test]
    fn kernel_radius_is_four_sigma_rounded_and_sums_to_one() {
        assert_eq!(gaussian_kernel(1.0).len(), 9);
        assert_eq!(gaussian_kernel(0.3).len(), 3); // int(1.7) = 1
        assert_eq!(gaussian_kernel(2.5).len(), 21);
        let s: f32 = gaussian_kernel(1.7).iter().sum();
        assert!((s - 1.0).abs() < 1e-6);
    }
}
