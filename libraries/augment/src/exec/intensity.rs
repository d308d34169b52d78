//! Intensity transforms. The point-wise ones (gamma, noise, bias field) run fused: one pass over
//! the volume, slice by slice, each step on a slice still in cache. Rescale and z-normalisation
//! need statistics of the whole volume first.

use rayon::prelude::*;

use crate::plan::Applied;
use crate::rng::{Purpose, Stream};
use crate::spec::NoiseKind;
use crate::volume::Volume;

/// A point-wise step, ready to run on any part of the volume.
pub enum PointStep {
    /// `sign(x) · |x|^gamma`.
    Gamma(f32),
    Noise {
        a: Stream,
        b: Option<Stream>,
        mean: f32,
        std: f32,
    },
    /// `x · exp(Σ c · x^a y^b z^c)` with per-axis powers precomputed.
    Bias(BiasField),
}

impl PointStep {
    /// The point-wise form of an applied transform, if it is one.
    pub fn of(t: &Applied, seed: u64, variant: u32, dims: [usize; 3]) -> Option<PointStep> {
        Some(match *t {
            Applied::Gamma { gamma } => PointStep::Gamma(gamma as f32),
            Applied::Noise {
                slot,
                mean,
                std,
                kind,
            } => PointStep::Noise {
                a: Stream::new(seed, variant, slot, Purpose::Noise),
                b: (kind == NoiseKind::Rician)
                    .then(|| Stream::new(seed, variant, slot, Purpose::NoiseB)),
                mean: mean as f32,
                std: std as f32,
            },
            Applied::BiasField {
                order,
                ref coefficients,
            } => PointStep::Bias(BiasField::new(order, coefficients, dims)),
            _ => return None,
        })
    }
}

/// TorchIO's bias field: coordinates in [-1, 1] per axis (voxel centres, `(idx - (n-1)/2) /
/// ((n-1)/2)`), terms ordered x-power outermost, then y, then z, total degree ≤ order.
pub struct BiasField {
    order: usize,
    /// `(px, py, pz, coefficient)` per term.
    pub(crate) terms: Vec<(usize, usize, usize, f64)>,
    /// Powers 0..=order of the coordinate, per axis and index.
    powers: [Vec<Vec<f64>>; 3],
}

impl BiasField {
    pub fn new(order: u32, coefficients: &[f64], dims: [usize; 3]) -> BiasField {
        let order = order as usize;
        let mut terms = Vec::new();
        let mut it = coefficients.iter();
        for x in 0..=order {
            for y in 0..=order - x {
                for z in 0..=order - x - y {
                    terms.push((x, y, z, *it.next().unwrap_or(&0.0)));
                }
            }
        }
        let powers = dims.map(|n| {
            let half = (n as f64 - 1.0) / 2.0;
            (0..n)
                .map(|i| {
                    // A one-voxel axis (2D image) sits at 0 (TorchIO divides by zero there).
                    let c = if n > 1 { (i as f64 - half) / half } else { 0.0 };
                    (0..=order).map(|p| c.powi(p as i32)).collect()
                })
                .collect()
        });
        BiasField {
            order,
            terms,
            powers,
        }
    }

    /// Row coefficients: the polynomial in x for row `(j, k)`.
    fn row(&self, j: usize, k: usize) -> Vec<f64> {
        let mut a = vec![0f64; self.order + 1];
        for &(px, py, pz, c) in &self.terms {
            a[px] += c * self.powers[1][j][py] * self.powers[2][k][pz];
        }
        a
    }
}

/// Runs point-wise steps in one pass.
pub fn run_points(vol: &mut Volume, steps: &[PointStep]) {
    run_points_from(None, vol, steps)
}

/// [`run_points`] reading the voxels from `src` (the same geometry) instead of `vol`: the copy
/// of a borrowed input is fused into the pass, row by row while it is in cache.
pub fn run_points_from(src: Option<&[f32]>, vol: &mut Volume, steps: &[PointStep]) {
    let [ni, nj, _] = vol.dims;
    vol.data
        .par_chunks_mut(ni)
        .enumerate()
        .with_min_len(16)
        .for_each_init(Scratch::default, |scratch, (r, row)| {
            let (j, k) = (r % nj, r / nj);
            let first = r * ni;
            if let Some(src) = src {
                row.copy_from_slice(&src[first..first + row.len()]);
            }
            for s in steps {
                match s {
                    PointStep::Gamma(g) => gamma_row(row, *g),
                    PointStep::Noise { a, b, mean, std } => {
                        noise_row(row, first, a, b.as_ref(), *mean, *std, scratch)
                    }
                    PointStep::Bias(f) => {
                        let a = f.row(j, k);
                        for (i, v) in row.iter_mut().enumerate() {
                            let x = &f.powers[0][i];
                            let e: f64 = a.iter().zip(x).map(|(c, p)| c * p).sum();
                            *v *= e.exp() as f32;
                        }
                    }
                }
            }
        });
}

/// `sign(x)·|x|^g` (TorchIO's Gamma for volumes with negative values; the same as `x^g`
/// otherwise); NaN becomes 0.
fn gamma_row(row: &mut [f32], g: f32) {
    for v in row {
        *v = v.signum() * v.abs().powf(g);
        if v.is_nan() {
            *v = 0.0;
        }
    }
}

/// Per-thread buffers for the noise of one row.
#[derive(Default)]
struct Scratch {
    words: Vec<u32>,
    normals: Vec<f32>,
}

impl Scratch {
    /// The normals of voxels `first .. first + len` (voxel `v`: normal `v % 4` of block `v / 4`).
    fn normals(&mut self, s: &Stream, first: usize, len: usize) -> &[f32] {
        let b0 = first / 4;
        let b1 = (first + len).div_ceil(4);
        self.normals.resize(4 * (b1 - b0), 0.0);
        crate::rng::fill_normals(s, b0 as u64, &mut self.words, &mut self.normals);
        let skip = first - 4 * b0;
        &self.normals[skip..skip + len]
    }
}

/// Gaussian noise `x + mean + std·n`, or Rician `|x + mean + std·(n + i·n')|`.
fn noise_row(
    row: &mut [f32],
    first: usize,
    a: &Stream,
    b: Option<&Stream>,
    mean: f32,
    std: f32,
    scratch: &mut Scratch,
) {
    let n1 = scratch.normals(a, first, row.len());
    for (v, &z) in row.iter_mut().zip(n1) {
        *v = *v + mean + std * z;
    }
    if let Some(b) = b {
        let n2 = scratch.normals(b, first, row.len());
        for (v, &z) in row.iter_mut().zip(n2) {
            let im = std * z;
            *v = (*v * *v + im * im).sqrt();
        }
    }
}

/// The `q`-th percentile (0..=100) with numpy's linear interpolation.
pub fn percentile(values: &mut [f32], q: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    let pos = q / 100.0 * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let (_, a, rest) = values.select_nth_unstable_by(lo, f32::total_cmp);
    let a = *a as f64;
    let b = if hi == lo {
        a
    } else {
        rest.iter().copied().fold(f32::INFINITY, f32::min) as f64
    };
    a + (b - a) * (pos - lo as f64)
}

/// TorchIO `RescaleIntensity`: clip to the percentiles, map linearly to `out`.
pub fn rescale(vol: &mut Volume, out: [f64; 2], percentiles: [f64; 2]) {
    let (lo, hi) = if percentiles == [0.0, 100.0] {
        // TorchIO's default: the minimum and maximum, no selection needed.
        let (lo, hi) = vol.min_max();
        (lo as f64, hi as f64)
    } else {
        let mut scratch = crate::volume::copied(&vol.data);
        let lo = percentile(&mut scratch, percentiles[0]);
        // The lower selection leaves every larger value above it: select the upper one there.
        let n = scratch.len();
        let at = (percentiles[0] / 100.0 * (n - 1) as f64).floor() as usize;
        let hi = if percentiles[1] / 100.0 * (n - 1) as f64 >= (at + 1) as f64 {
            let upper = &mut scratch[at + 1..];
            let q = (percentiles[1] / 100.0 * (n - 1) as f64 - (at + 1) as f64)
                / (upper.len() - 1).max(1) as f64;
            percentile(upper, 100.0 * q)
        } else {
            percentile(&mut scratch, percentiles[1])
        };
        (lo, hi)
    };
    if hi <= lo {
        return; // a constant volume: TorchIO leaves it as it is
    }
    let scale = (out[1] - out[0]) / (hi - lo);
    let (lo32, hi32) = (lo as f32, hi as f32);
    vol.data.par_iter_mut().for_each(|v| {
        *v = ((v.clamp(lo32, hi32) as f64 - lo) * scale + out[0]) as f32;
    });
}

/// TorchIO `ZNormalization`: `(x - mean) / std` (std with Bessel's correction, like torch).
pub fn z_normalize(vol: &mut Volume, foreground_only: bool) {
    let all_mean = vol.data.par_iter().map(|&v| v as f64).sum::<f64>() / vol.len() as f64;
    let keep = |v: f32| !foreground_only || v as f64 > all_mean;
    let (n, sum) = vol
        .data
        .par_iter()
        .filter(|&&v| keep(v))
        .map(|&v| (1usize, v as f64))
        .reduce(|| (0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    if n < 2 {
        return;
    }
    let mean = sum / n as f64;
    let ss: f64 = vol
        .data
        .par_iter()
        .filter(|&&v| keep(v))
        .map(|&v| (v as f64 - mean).powi(2))
        .sum();
    let std = (ss / (n - 1) as f64).sqrt();
    if std == 0.0 {
        return;
    }
    vol.data
        .par_iter_mut()
        .for_each(|v| *v = ((*v as f64 - mean) / std) as f32);
}

/// TorchIO `LabelsToImage`: each label's voxels drawn from N(mean, std) of that label.
pub fn labels_to_image(vol: &mut Volume, label: &Volume, classes: &[[f64; 3]], stream: &Stream) {
    let n = vol.dims[0];
    vol.data
        .par_chunks_mut(n)
        .zip(label.data.par_chunks(n))
        .enumerate()
        .for_each_init(Scratch::default, |scratch, (r, (row, labels))| {
            let normals = scratch.normals(stream, r * n, row.len());
            for ((v, &l), &z) in row.iter_mut().zip(labels).zip(normals) {
                *v = match classes.iter().find(|c| c[0] as f32 == l) {
                    Some(&[_, mean, std]) => mean as f32 + std as f32 * z,
                    _ => 0.0,
                };
            }
        });
}
