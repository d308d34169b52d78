//! Spikes: bright points in k-space, as plane waves added to the image.

use rayon::prelude::*;
use rustfft::FftPlanner;

use super::lines::*;
use super::reference::*;
use super::*;
use crate::volume::Volume;

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
pub(super) fn spike_indices(dims: [usize; 3], positions: &[[f64; 3]]) -> Vec<[usize; 3]> {
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
pub(super) fn spike_amplitudes(vol: &Volume, us: &[[usize; 3]], intensity: f64) -> Vec<f64> {
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
pub(super) fn min_and_sum(data: &[f32]) -> (f32, f64) {
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
pub(super) struct HalfSpectrum {
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
pub(super) fn dft_at(vol: &Volume, u: [usize; 3]) -> C64 {
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
pub(super) fn twiddles(n: usize, u: usize, sign: f64) -> Vec<C64> {
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
pub(super) fn add_cosines(data: &mut [f32], dims: [usize; 3], spikes: &[([usize; 3], f64)]) {
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
