//! k-space artefacts: TorchIO `Ghosting`, `Spike` and `Motion`
//! (`transforms/augmentation/intensity/random_{ghosting,spike,motion}.py`, with
//! `transforms/fourier.py`). TorchIO takes `S = fftshift(fftn(x))` over the three axes (complex64),
//! edits `S`, and returns `ifftn(ifftshift(S)).real` as f32 (the real part, not the magnitude).
//!
//! None of the three needs the 3D FFT here:
//!
//! - When the edit multiplies `S` by a factor that depends only on the index along one axis
//!   (ghosting; motion's time segments, which pick per index along axis 2 which moved copy the
//!   k-space comes from), the FFTs along the other two axes cancel against their inverses, so
//!   1D FFTs along that axis give the same image. For a real image, `Re(ifft(g·fft(x)))` equals
//!   `ifft(h·fft(x))` with `h(u) = (g(u) + g(-u)) / 2` (real and even), which is real: two real
//!   lines are packed as one complex line and transformed together.
//! - A spike adds `A` at one k-space index `u`; the inverse FFT turns that into
//!   `(A / N)·cos(2π Σ u_a r_a / n_a)` added to the image, so only `A = intensity · max|S|` is
//!   needed. For a non-negative image `max|S| = |S(0)| = Σ x` exactly; otherwise (or when a
//!   spike lands on the maximum and another follows) an f32 FFT of half the spectrum gives it
//!   (`|S(-u)| = |S(u)|` for a real image). A second spike needs `S` at the first one's
//!   position: one DFT coefficient, a separable sum.
//!
//! The `*_reference` functions are the definitions, written as TorchIO computes them (full 3D
//! FFT in f64, shifts, edits, inverse, real part); the tests prove the fast paths equal them.
//!
//! Results are the same whatever the thread count (every sum has a fixed order); rustfft picks
//! SIMD code paths at run time, so the last bits may differ between CPUs.

use std::sync::Arc;

use rayon::prelude::*;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::exec::warp::resample_world;
use crate::spec::Interpolation;
use crate::volume::{Affine, Volume};

type C32 = Complex<f32>;
type C64 = Complex<f64>;

/// Where `fftshift` puts the unshifted FFT index `u` of a line of `n`: `(u + n/2) mod n`.
#[inline]
pub fn shifted(u: usize, n: usize) -> usize {
    (u + n / 2) % n
}

/// The unshifted FFT index at position `s` of the shifted spectrum (the inverse of [`shifted`]).
#[inline]
pub fn unshifted(s: usize, n: usize) -> usize {
    (s + n - n / 2) % n
}

// ------------------------------------------------------------------------------------------
// Ghosting

/// TorchIO `Ghosting.add_artifact`, in place. Along array axis `axis` (length `n`) the planes
/// `S[::num_ghosts]` of the shifted spectrum are multiplied by `1 - intensity`, then the slab
/// `[n/2 - m/2, n/2 + m/2)` with `m = round(restore·n)` (numpy rounding, half to even) is put
/// back as it was. `num_ghosts == 0` or `intensity == 0` returns the input untouched, as in
/// TorchIO. `restore: None` (TorchIO's default) restores the plane `n/2` alone; every
/// `restore` with `m < 2` restores nothing, as TorchIO does.
pub fn ghosting(vol: &mut Volume, num_ghosts: u32, axis: u8, intensity: f64, restore: Option<f64>) {
    if num_ghosts == 0 || intensity == 0.0 {
        return;
    }
    let a = axis as usize;
    let n = vol.dims[a];
    let g = ghost_gains(n, num_ghosts, intensity, restore);
    let h: Vec<f32> = (0..n)
        .map(|u| ((g[shifted(u, n)] + g[shifted((n - u) % n, n)]) / 2.0) as f32)
        .collect();
    let mut planner = FftPlanner::<f32>::new();
    let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let scale = 1.0 / n as f32;
    let scratch_len = fwd
        .get_inplace_scratch_len()
        .max(inv.get_inplace_scratch_len());
    map_line_pairs(
        &mut vol.data,
        &[],
        vol.dims,
        a,
        scratch_len,
        |bufs, pairs, scratch| {
            let buf = &mut bufs[0][..pairs * n];
            fwd.process_with_scratch(buf, scratch);
            for line in buf.chunks_mut(n) {
                for (v, &w) in line.iter_mut().zip(&h) {
                    *v *= w * scale;
                }
            }
            inv.process_with_scratch(buf, scratch);
        },
    );
}

/// The factor applied to each plane of the shifted spectrum (index `s` along the axis).
fn ghost_gains(n: usize, num_ghosts: u32, intensity: f64, restore: Option<f64>) -> Vec<f64> {
    let (lo, hi) = restore_slab(n, restore);
    (0..n)
        .map(|s| {
            if s.is_multiple_of(num_ghosts as usize) && !(lo..hi).contains(&s) {
                1.0 - intensity
            } else {
                1.0
            }
        })
        .collect()
}

/// TorchIO `Ghosting._get_slices_to_restore`: `slice(mid - m//2, mid + m//2)`, `mid = n//2`,
/// `m = int(np.round(restore·n))`; `None`: `slice(mid, mid + 1)`.
fn restore_slab(n: usize, restore: Option<f64>) -> (usize, usize) {
    let mid = n / 2;
    let Some(restore) = restore else {
        return (mid, mid + 1);
    };
    let m = (restore * n as f64).round_ties_even().clamp(0.0, n as f64) as usize;
    (mid - (m / 2).min(mid), (mid + m / 2).min(n))
}

/// [`ghosting`] as TorchIO computes it: full 3D FFT (f64), shifted spectrum edited in place.
pub fn ghosting_reference(
    vol: &Volume,
    num_ghosts: u32,
    axis: u8,
    intensity: f64,
    restore: Option<f64>,
) -> Vec<f32> {
    if num_ghosts == 0 || intensity == 0.0 {
        return vol.data.clone();
    }
    let a = axis as usize;
    let dims = vol.dims;
    let n = dims[a];
    let mut s = spectrum_reference(&vol.data, dims);
    let (lo, hi) = restore_slab(n, restore);
    let kept: Vec<(usize, C64)> = (0..s.len())
        .filter(|&e| (lo..hi).contains(&coords(e, dims)[a]))
        .map(|e| (e, s[e]))
        .collect();
    for (e, v) in s.iter_mut().enumerate() {
        if coords(e, dims)[a].is_multiple_of(num_ghosts as usize) {
            *v *= 1.0 - intensity;
        }
    }
    for (e, v) in kept {
        s[e] = v;
    }
    image_reference(s, dims)
}

// ------------------------------------------------------------------------------------------
// Spike

/// TorchIO `Spike.add_artifact`, in place. For each position `p` (fractions in `[0, 1)` along
/// each axis of the *shifted* spectrum, as TorchIO's `torch.rand(n, 3)`), the index is
/// `floor(p·shape)` (TorchIO's `mid + (index - mid)` is that index), and
/// `S[index] += intensity · max|S|`, the maximum taken again before every spike (so a first
/// spike can raise the second). `intensity == 0` or no spikes returns the input untouched.
/// Difference: a position of exactly 1 (outside TorchIO's range) is clamped to the last index.
pub fn spike(vol: &mut Volume, positions: &[[f64; 3]], intensity: f64) {
    if intensity == 0.0 || positions.is_empty() {
        return;
    }
    let us = spike_indices(vol.dims, positions);
    let amps = spike_amplitudes(vol, &us, intensity);
    let n = vol.len() as f64;
    let spikes: Vec<([usize; 3], f64)> = us.iter().zip(&amps).map(|(&u, &a)| (u, a / n)).collect();
    add_cosines(&mut vol.data, vol.dims, &spikes);
}

/// Unshifted FFT index of each spike.
fn spike_indices(dims: [usize; 3], positions: &[[f64; 3]]) -> Vec<[usize; 3]> {
    positions
        .iter()
        .map(|p| {
            std::array::from_fn(|a| {
                let n = dims[a];
                let s = ((p[a] * n as f64).floor().max(0.0) as usize).min(n - 1);
                unshifted(s, n)
            })
        })
        .collect()
}

/// The amplitude `intensity · max|S|` of each spike, the maximum taken after the earlier ones.
fn spike_amplitudes(vol: &Volume, us: &[[usize; 3]], intensity: f64) -> Vec<f64> {
    let dc = [0usize; 3];
    let (min, m0) = min_and_sum(&vol.data);
    // S(0) = Σ x, and for a non-negative image |S(u)| <= Σ|x| = S(0).
    let bound = min >= 0.0;
    // S at the positions spiked so far, spikes included.
    let mut edited: Vec<([usize; 3], C64)> = Vec::new();
    let mut half: Option<HalfSpectrum> = None;
    let mut amps = Vec::with_capacity(us.len());
    for (s, &u) in us.iter().enumerate() {
        let top = edited.iter().map(|(_, v)| v.norm()).fold(0.0, f64::max);
        let max = if bound && !edited.iter().any(|(p, _)| *p == dc) {
            m0.max(top)
        } else if bound && top >= m0 {
            top
        } else {
            let h = half.get_or_insert_with(|| HalfSpectrum::new(vol));
            let spiked: Vec<[usize; 3]> = edited.iter().map(|(p, _)| *p).collect();
            h.max_elsewhere(&spiked).max(top)
        };
        let amp = max * intensity;
        amps.push(amp);
        if s + 1 < us.len() {
            match edited.iter_mut().find(|(p, _)| *p == u) {
                Some((_, v)) => *v += amp,
                None => {
                    let f = if u == dc {
                        C64::new(m0, 0.0)
                    } else {
                        dft_at(vol, u)
                    };
                    edited.push((u, f + amp));
                }
            }
        }
    }
    amps
}

/// `(min x, Σ x)` in one pass, the sum in f64 in a fixed order (8 running sums per chunk of
/// 65536 voxels, then the chunks in order), so it vectorises and does not depend on threads.
fn min_and_sum(data: &[f32]) -> (f32, f64) {
    let parts: Vec<(f32, f64)> = data
        .par_chunks(1 << 16)
        .map(|c| {
            let (mut lo, mut acc) = ([f32::INFINITY; 8], [0f64; 8]);
            let mut it = c.chunks_exact(8);
            for v in &mut it {
                for q in 0..8 {
                    lo[q] = if v[q] < lo[q] { v[q] } else { lo[q] };
                    acc[q] += v[q] as f64;
                }
            }
            let mut m = lo.iter().fold(f32::INFINITY, |m, &v| m.min(v));
            let mut sum = acc.iter().sum::<f64>();
            for &v in it.remainder() {
                m = m.min(v);
                sum += v as f64;
            }
            (m, sum)
        })
        .collect();
    parts
        .iter()
        .fold((f32::INFINITY, 0.0), |(m, s), &(a, b)| (m.min(a), s + b))
}

/// The half `u_i <= ni/2` of the unshifted f32 spectrum of a real volume: `|S(-u)| = |S(u)|`,
/// so it holds every magnitude. Rows along i are transformed two at a time (packed as real and
/// imaginary parts, then separated), then the half is transformed along j and k.
struct HalfSpectrum {
    h: Vec<C32>,
    dims: [usize; 3],
}

impl HalfSpectrum {
    fn new(vol: &Volume) -> HalfSpectrum {
        let [ni, nj, nk] = vol.dims;
        let hi = ni / 2 + 1;
        let mut planner = FftPlanner::<f32>::new();
        let f0 = planner.plan_fft_forward(ni);
        let scratch_len = f0.get_inplace_scratch_len();
        let mut h = vec![C32::new(0.0, 0.0); hi * nj * nk];
        h.par_chunks_mut(2 * hi).enumerate().for_each_init(
            || {
                (
                    vec![C32::new(0.0, 0.0); ni],
                    vec![C32::new(0.0, 0.0); scratch_len],
                )
            },
            |(buf, scratch), (p, out)| {
                let a = &vol.data[2 * p * ni..][..ni];
                match (out.len() > hi).then(|| &vol.data[(2 * p + 1) * ni..][..ni]) {
                    Some(b) => buf
                        .iter_mut()
                        .zip(a.iter().zip(b))
                        .for_each(|(z, (&x, &y))| *z = C32::new(x, y)),
                    None => buf
                        .iter_mut()
                        .zip(a)
                        .for_each(|(z, &x)| *z = C32::new(x, 0.0)),
                }
                f0.process_with_scratch(buf, scratch);
                let (oa, ob) = out.split_at_mut(hi);
                for u in 0..hi {
                    let (z, zm) = (buf[u], buf[(ni - u) % ni].conj());
                    oa[u] = (z + zm) * 0.5;
                    if let Some(o) = ob.get_mut(u) {
                        *o = (z - zm) * C32::new(0.0, -0.5);
                    }
                }
            },
        );
        let hd = [hi, nj, nk];
        for axis in 1..3 {
            if hd[axis] > 1 {
                fft_axis(&mut h, hd, axis, &planner.plan_fft_forward(hd[axis]));
            }
        }
        HalfSpectrum { h, dims: vol.dims }
    }

    /// `max |S(v)|` over the positions `v` not in `spiked`.
    fn max_elsewhere(&mut self, spiked: &[[usize; 3]]) -> f64 {
        let [ni, nj, _] = self.dims;
        let hi = ni / 2 + 1;
        let mirror = |u: [usize; 3]| -> [usize; 3] {
            std::array::from_fn(|a| (self.dims[a] - u[a]) % self.dims[a])
        };
        // An entry e stands for the positions e and -e; leave it out when both are spiked.
        let mut out: Vec<(usize, C32)> = Vec::new();
        for &p in spiked {
            for e in [p, mirror(p)] {
                let both = spiked.contains(&e) && spiked.contains(&mirror(e));
                let at = e[0] + hi * (e[1] + nj * e[2]);
                if e[0] < hi && both && !out.iter().any(|(q, _)| *q == at) {
                    out.push((at, self.h[at]));
                    self.h[at] = C32::new(0.0, 0.0);
                }
            }
        }
        let max = self
            .h
            .par_iter()
            .map(|v| v.norm_sqr())
            .reduce(|| 0.0, f32::max);
        for (at, v) in out {
            self.h[at] = v;
        }
        (max as f64).sqrt()
    }
}

/// One coefficient `S(u) = Σ_r x(r)·exp(-2πi Σ_a u_a r_a / n_a)` of the unshifted spectrum.
fn dft_at(vol: &Volume, u: [usize; 3]) -> C64 {
    let [ni, nj, _] = vol.dims;
    let tw: [Vec<C64>; 3] = std::array::from_fn(|a| twiddles(vol.dims[a], u[a], -1.0));
    // Per slab, Σ_j w_j·w_k·x(i, j, k) for every i (contiguous, vectorises), then Σ_i w_i·(..).
    let parts: Vec<C64> = vol
        .data
        .par_chunks(ni * nj)
        .enumerate()
        .map(|(k, slab)| {
            let (mut re, mut im) = (vec![0f64; ni], vec![0f64; ni]);
            for (j, row) in slab.chunks(ni).enumerate() {
                let c = tw[1][j] * tw[2][k];
                for ((r, m), &x) in re.iter_mut().zip(im.iter_mut()).zip(row) {
                    *r += c.re * x as f64;
                    *m += c.im * x as f64;
                }
            }
            tw[0]
                .iter()
                .zip(re.iter().zip(&im))
                .map(|(w, (&r, &m))| w * C64::new(r, m))
                .sum()
        })
        .collect();
    parts.iter().sum()
}

/// `exp(sign·2πi·u·r / n)` for `r` in `0..n`, the phase reduced exactly (`u·r mod n`).
fn twiddles(n: usize, u: usize, sign: f64) -> Vec<C64> {
    (0..n)
        .map(|r| {
            C64::from_polar(
                1.0,
                sign * std::f64::consts::TAU * ((u * r) % n) as f64 / n as f64,
            )
        })
        .collect()
}

/// `x(r) += a·cos(2π Σ_a u_a r_a / n_a)` for every `(u, a)`: the real part of the inverse FFT
/// of a real spike `a·N` at unshifted index `u`.
fn add_cosines(data: &mut [f32], dims: [usize; 3], spikes: &[([usize; 3], f64)]) {
    let [ni, nj, _] = dims;
    let tables: Vec<([Vec<C64>; 3], f64)> = spikes
        .iter()
        .map(|&(u, amp)| (std::array::from_fn(|a| twiddles(dims[a], u[a], 1.0)), amp))
        .collect();
    let rows: Vec<(Vec<f32>, Vec<f32>)> = tables
        .iter()
        .map(|(t, _)| {
            (
                t[0].iter().map(|c| c.re as f32).collect(),
                t[0].iter().map(|c| c.im as f32).collect(),
            )
        })
        .collect();
    data.par_chunks_mut(ni * nj)
        .enumerate()
        .for_each(|(k, slab)| {
            for (j, row) in slab.chunks_mut(ni).enumerate() {
                for ((t, amp), (cos, sin)) in tables.iter().zip(&rows) {
                    let c = t[1][j] * t[2][k] * *amp;
                    let (re, im) = (c.re as f32, c.im as f32);
                    for ((x, &cs), &sn) in row.iter_mut().zip(cos).zip(sin) {
                        *x += re * cs - im * sn;
                    }
                }
            }
        });
}

/// [`spike`] as TorchIO computes it (full 3D FFT in f64).
pub fn spike_reference(vol: &Volume, positions: &[[f64; 3]], intensity: f64) -> Vec<f32> {
    if intensity == 0.0 || positions.is_empty() {
        return vol.data.clone();
    }
    let dims = vol.dims;
    let mut s = spectrum_reference(&vol.data, dims);
    for p in positions {
        let idx: [usize; 3] =
            std::array::from_fn(|a| ((p[a] * dims[a] as f64).floor() as usize).min(dims[a] - 1));
        let max = s.iter().map(|v| v.norm()).fold(0.0, f64::max);
        s[idx[0] + dims[0] * (idx[1] + dims[1] * idx[2])] += max * intensity;
    }
    image_reference(s, dims)
}

// ------------------------------------------------------------------------------------------
// Motion

/// TorchIO `Motion.add_artifact`, in place. Each movement `m` (degrees, translation in mm) is a
/// rigid resampling of the volume (padded with the volume's minimum, `interpolation`); the
/// original and the moved copies are Fourier transformed, and the k-space planes along array
/// axis 2 (the last, TorchIO's `spectrum[..., ini:fin]`) are taken from copy after copy:
/// segment `m` spans `[int(nk·t[m-1]), int(nk·t[m]))` of the shifted spectrum (f32 product,
/// truncated; the last ends at `nk`), and the original's spectrum is swapped into the segment
/// that holds the k-space centre (TorchIO `sort_spectra`: the first `m` with `t[m] > 0.5`, else
/// the last). Result: the real part of the inverse FFT.
///
/// The rigid maps are TorchIO's `get_rigid_transforms`: an ITK `Euler3DTransform` with
/// rotation `Rz·Rx·Ry` (angles in radians, ITK's default order) and translation `t`, in LPS;
/// TorchIO rebuilds it from `GetMatrix()` and `GetTranslation()`, which drops the centre it
/// set, so the rotation is about the world origin: input = `R·p + t` for output point `p`
/// (LPS). In RAS (x and y negated): `F·R·F` and `F·t`, `F = diag(-1, -1, 1)` (see
/// [`motion_map`]). A 2D image (`nk = 1`) has one plane, so the result is the copy whose
/// segment holds it, as in TorchIO. The resamplings are [`resample_world`]'s, so its rounding
/// (f32 coordinates) decides near-ties of nearest neighbour.
pub fn motion(
    vol: &mut Volume,
    degrees: &[[f64; 3]],
    translation: &[[f64; 3]],
    times: &[f64],
    interpolation: Interpolation,
) {
    let n = degrees.len().min(translation.len()).min(times.len());
    if n == 0 {
        return;
    }
    let pad = vol.min_max().0;
    let moved: Vec<Vec<f32>> = (0..n)
        .map(|m| {
            resample_world(
                vol,
                &motion_map(degrees[m], translation[m]),
                interpolation,
                pad,
            )
        })
        .collect();
    let nk = vol.dims[2];
    let owner = segment_owner(nk, &times[..n]);
    let perm = centre_swap(&times[..n]);
    // Image s fills the planes of segment perm[s].
    let h: Vec<Vec<f32>> = (0..=n)
        .map(|s| {
            let mask = |u: usize| (owner[shifted(u, nk)] == perm[s]) as u8 as f32;
            (0..nk)
                .map(|u| (mask(u) + mask((nk - u) % nk)) / 2.0)
                .collect()
        })
        .collect();
    let mut planner = FftPlanner::<f32>::new();
    let (fwd, inv) = (planner.plan_fft_forward(nk), planner.plan_fft_inverse(nk));
    let scale = 1.0 / nk as f32;
    let extra: Vec<&[f32]> = moved.iter().map(|v| &v[..]).collect();
    let scratch_len = fwd
        .get_inplace_scratch_len()
        .max(inv.get_inplace_scratch_len());
    map_line_pairs(
        &mut vol.data,
        &extra,
        vol.dims,
        2,
        scratch_len,
        |bufs, pairs, scratch| {
            let len = pairs * nk;
            for b in bufs.iter_mut() {
                fwd.process_with_scratch(&mut b[..len], scratch);
            }
            let (first, rest) = bufs.split_at_mut(1);
            for (p, acc) in first[0][..len].chunks_mut(nk).enumerate() {
                for (u, v) in acc.iter_mut().enumerate() {
                    let mut sum = *v * h[0][u];
                    for (s, b) in rest.iter().enumerate() {
                        sum += b[p * nk + u] * h[s + 1][u];
                    }
                    *v = sum * scale;
                }
            }
            inv.process_with_scratch(&mut first[0][..len], scratch);
        },
    );
}

/// The RAS map (output world point → input world point) of one TorchIO movement.
pub fn motion_map(degrees: [f64; 3], translation: [f64; 3]) -> Affine {
    let [x, y, z] = degrees.map(f64::to_radians);
    let rx = [
        [1.0, 0.0, 0.0],
        [0.0, x.cos(), -x.sin()],
        [0.0, x.sin(), x.cos()],
    ];
    let ry = [
        [y.cos(), 0.0, y.sin()],
        [0.0, 1.0, 0.0],
        [-y.sin(), 0.0, y.cos()],
    ];
    let rz = [
        [z.cos(), -z.sin(), 0.0],
        [z.sin(), z.cos(), 0.0],
        [0.0, 0.0, 1.0],
    ];
    let r = mat3(&mat3(&rz, &rx), &ry);
    let f = [-1.0, -1.0, 1.0];
    let mut m = [[0.0; 4]; 4];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = f[i] * r[i][j] * f[j];
        }
        m[i][3] = f[i] * translation[i];
    }
    m[3][3] = 1.0;
    m
}

fn mat3(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

/// For each position `s` of the shifted spectrum along axis 2, the segment whose spectrum it
/// takes (later segments overwrite earlier ones, as TorchIO's slice assignments do).
fn segment_owner(nk: usize, times: &[f64]) -> Vec<usize> {
    let mut ends: Vec<usize> = times
        .iter()
        .map(|&t| ((nk as f32 * t as f32) as i64).clamp(0, nk as i64) as usize)
        .collect();
    ends.push(nk);
    let mut owner = vec![0usize; nk];
    let mut ini = 0;
    for (m, &fin) in ends.iter().enumerate() {
        for o in owner.iter_mut().take(fin).skip(ini) {
            *o = m;
        }
        ini = fin;
    }
    owner
}

/// TorchIO `sort_spectra`: segment `m` takes image `perm[m]` (0 the original, `1..` the moved
/// copies), the original swapped with the copy of the segment holding the centre.
fn centre_swap(times: &[f64]) -> Vec<usize> {
    let index = times
        .iter()
        .position(|&t| t as f32 > 0.5)
        .unwrap_or(times.len());
    let mut perm: Vec<usize> = (0..=times.len()).collect();
    perm.swap(0, index);
    perm
}

/// [`motion`] as TorchIO computes it: full 3D FFT (f64) of every copy, planes assembled along
/// axis 2 of the shifted spectra, inverse, real part.
pub fn motion_reference(
    vol: &Volume,
    degrees: &[[f64; 3]],
    translation: &[[f64; 3]],
    times: &[f64],
    interpolation: Interpolation,
) -> Vec<f32> {
    let dims = vol.dims;
    let pad = vol.min_max().0;
    let mut images = vec![vol.data.clone()];
    for m in 0..degrees.len() {
        images.push(resample_world(
            vol,
            &motion_map(degrees[m], translation[m]),
            interpolation,
            pad,
        ));
    }
    let mut spectra: Vec<Vec<C64>> = images.iter().map(|x| spectrum_reference(x, dims)).collect();
    let index = times
        .iter()
        .position(|&t| t as f32 > 0.5)
        .unwrap_or(spectra.len() - 1);
    spectra.swap(0, index);
    let nk = dims[2];
    let mut ends: Vec<usize> = times
        .iter()
        .map(|&t| (nk as f32 * t as f32) as usize)
        .collect();
    ends.push(nk);
    let mut result = vec![C64::new(0.0, 0.0); vol.len()];
    let mut ini = 0;
    for (spectrum, &fin) in spectra.iter().zip(&ends) {
        for (e, v) in result.iter_mut().enumerate() {
            let k = coords(e, dims)[2];
            if ini <= k && k < fin {
                *v = spectrum[e];
            }
        }
        ini = fin;
    }
    image_reference(result, dims)
}

// ------------------------------------------------------------------------------------------
// Lines

/// Lines per batch: pairs of rows (axis 0) or of columns (axes 1, 2) transformed together.
const BATCH: usize = 32;

/// Runs `op` on every line of `data` along `axis`, two real lines at a time packed as the real
/// and imaginary parts of one complex line: `bufs[0]` holds `pairs` such lines (`n` each) of
/// `data`, `bufs[1 + e]` the same lines of `extra[e]` (same dims). `op` leaves the packed result
/// in `bufs[0]`, whose real parts go back to the first line of each pair and imaginary parts to
/// the second. `scratch_len`: the FFT scratch `op` needs.
fn map_line_pairs<F>(
    data: &mut [f32],
    extra: &[&[f32]],
    dims: [usize; 3],
    axis: usize,
    scratch_len: usize,
    op: F,
) where
    F: Fn(&mut [Vec<C32>], usize, &mut [C32]) + Sync,
{
    let ni = dims[0];
    let n = dims[axis];
    let nsrc = 1 + extra.len();
    let init = || {
        (
            vec![vec![C32::new(0.0, 0.0); BATCH / 2 * n]; nsrc],
            vec![C32::new(0.0, 0.0); scratch_len],
        )
    };
    let groups = row_groups(data, dims, axis, BATCH);
    groups
        .into_par_iter()
        .for_each_init(init, |(bufs, scratch), (ids, mut rows)| {
            if axis == 0 {
                let pairs = rows.len().div_ceil(2);
                for (s, buf) in bufs.iter_mut().enumerate() {
                    for p in 0..pairs {
                        let line = |q: usize| -> Option<&[f32]> {
                            (q < rows.len()).then(|| {
                                if s == 0 {
                                    &rows[q][..]
                                } else {
                                    &extra[s - 1][ids[q] * ni..][..ni]
                                }
                            })
                        };
                        let (a, b) = (
                            line(2 * p).expect("a pair has a first line"),
                            line(2 * p + 1),
                        );
                        let out = &mut buf[p * n..][..n];
                        match b {
                            Some(b) => out
                                .iter_mut()
                                .zip(a.iter().zip(b))
                                .for_each(|(o, (&x, &y))| *o = C32::new(x, y)),
                            None => out
                                .iter_mut()
                                .zip(a)
                                .for_each(|(o, &x)| *o = C32::new(x, 0.0)),
                        }
                    }
                }
                op(bufs, pairs, scratch);
                for p in 0..pairs {
                    let res = &bufs[0][p * n..][..n];
                    rows[2 * p].iter_mut().zip(res).for_each(|(o, v)| *o = v.re);
                    if let Some(row) = rows.get_mut(2 * p + 1) {
                        row.iter_mut().zip(res).for_each(|(o, v)| *o = v.im);
                    }
                }
                return;
            }
            for i0 in (0..ni).step_by(BATCH) {
                let w = BATCH.min(ni - i0);
                let pairs = w.div_ceil(2);
                for (s, buf) in bufs.iter_mut().enumerate() {
                    for t in 0..n {
                        let row: &[f32] = if s == 0 {
                            &rows[t][i0..i0 + w]
                        } else {
                            &extra[s - 1][ids[t] * ni + i0..][..w]
                        };
                        for p in 0..pairs {
                            let y = if 2 * p + 1 < w { row[2 * p + 1] } else { 0.0 };
                            buf[p * n + t] = C32::new(row[2 * p], y);
                        }
                    }
                }
                op(bufs, pairs, scratch);
                for (t, row) in rows.iter_mut().enumerate() {
                    let row = &mut row[i0..i0 + w];
                    for p in 0..pairs {
                        let v = bufs[0][p * n + t];
                        row[2 * p] = v.re;
                        if 2 * p + 1 < w {
                            row[2 * p + 1] = v.im;
                        }
                    }
                }
            }
        });
}

/// The rows (`ni` long) of `data`, grouped so that every line along `axis` lies in one group,
/// each row with its number `j + nj·k`. Axis 0: runs of `run` consecutive rows (the lines are
/// the rows). Axes 1 and 2: the rows sharing `k` (axis 1) or `j` (axis 2), in order along the
/// axis (the lines are the columns).
#[allow(clippy::type_complexity)]
pub(crate) fn row_groups<T>(
    data: &mut [T],
    dims: [usize; 3],
    axis: usize,
    run: usize,
) -> Vec<(Vec<usize>, Vec<&mut [T]>)> {
    let [ni, nj, nk] = dims;
    let count = match axis {
        0 => (nj * nk).div_ceil(run),
        1 => nk,
        _ => nj,
    };
    let mut groups: Vec<(Vec<usize>, Vec<&mut [T]>)> =
        (0..count).map(|_| (Vec::new(), Vec::new())).collect();
    for (r, row) in data.chunks_mut(ni).enumerate() {
        let g = match axis {
            0 => r / run,
            1 => r / nj,
            _ => r % nj,
        };
        groups[g].0.push(r);
        groups[g].1.push(row);
    }
    groups
}

/// Unnormalised FFT of every line along `axis` of a complex volume, in place.
fn fft_axis(s: &mut [C32], dims: [usize; 3], axis: usize, fft: &Arc<dyn Fft<f32>>) {
    let (ni, n) = (dims[0], dims[axis]);
    let scratch_len = fft.get_inplace_scratch_len();
    let init = || {
        (
            vec![C32::new(0.0, 0.0); BATCH * n],
            vec![C32::new(0.0, 0.0); scratch_len],
        )
    };
    row_groups(s, dims, axis, BATCH)
        .into_par_iter()
        .for_each_init(init, |(buf, scratch), (_, mut rows)| {
            if axis == 0 {
                for row in rows.iter_mut() {
                    fft.process_with_scratch(row, scratch);
                }
                return;
            }
            for i0 in (0..ni).step_by(BATCH) {
                let w = BATCH.min(ni - i0);
                for (t, row) in rows.iter().enumerate() {
                    for c in 0..w {
                        buf[c * n + t] = row[i0 + c];
                    }
                }
                fft.process_with_scratch(&mut buf[..w * n], scratch);
                for (t, row) in rows.iter_mut().enumerate() {
                    for c in 0..w {
                        row[i0 + c] = buf[c * n + t];
                    }
                }
            }
        });
}

// ------------------------------------------------------------------------------------------
// Reference: TorchIO's FourierTransform in f64

fn coords(e: usize, dims: [usize; 3]) -> [usize; 3] {
    [
        e % dims[0],
        (e / dims[0]) % dims[1],
        e / (dims[0] * dims[1]),
    ]
}

/// `fftshift(fftn(x))`.
fn spectrum_reference(x: &[f32], dims: [usize; 3]) -> Vec<C64> {
    let mut s: Vec<C64> = x.iter().map(|&v| C64::new(v as f64, 0.0)).collect();
    fft3_reference(&mut s, dims, false);
    let mut out = vec![C64::new(0.0, 0.0); s.len()];
    for (e, v) in s.iter().enumerate() {
        let u = coords(e, dims);
        let t: [usize; 3] = std::array::from_fn(|a| shifted(u[a], dims[a]));
        out[t[0] + dims[0] * (t[1] + dims[1] * t[2])] = *v;
    }
    out
}

/// `ifftn(ifftshift(s)).real` as f32.
fn image_reference(s: Vec<C64>, dims: [usize; 3]) -> Vec<f32> {
    let mut u = vec![C64::new(0.0, 0.0); s.len()];
    for (e, v) in s.iter().enumerate() {
        let t = coords(e, dims);
        let q: [usize; 3] = std::array::from_fn(|a| unshifted(t[a], dims[a]));
        u[q[0] + dims[0] * (q[1] + dims[1] * q[2])] = *v;
    }
    fft3_reference(&mut u, dims, true);
    let n = u.len() as f64;
    u.iter().map(|v| (v.re / n) as f32).collect()
}

/// Unnormalised 3D FFT (forward or inverse), one axis after the other.
fn fft3_reference(s: &mut [C64], dims: [usize; 3], inverse: bool) {
    let mut planner = FftPlanner::<f64>::new();
    for axis in 0..3 {
        let n = dims[axis];
        let fft = if inverse {
            planner.plan_fft_inverse(n)
        } else {
            planner.plan_fft_forward(n)
        };
        let stride = [1, dims[0], dims[0] * dims[1]][axis];
        let mut line = vec![C64::new(0.0, 0.0); n];
        for e in 0..s.len() {
            if coords(e, dims)[axis] != 0 {
                continue;
            }
            for (t, v) in line.iter_mut().enumerate() {
                *v = s[e + t * stride];
            }
            fft.process(&mut line);
            for (t, v) in line.iter().enumerate() {
                s[e + t * stride] = *v;
            }
        }
    }
}
