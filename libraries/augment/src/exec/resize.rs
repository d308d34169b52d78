//! Thick slices: TorchIO `RandomAnisotropy` (`transforms/augmentation/spatial/random_anisotropy.py`)
//! runs `Resample` (`transforms/preprocessing/spatial/resample.py`) twice through SimpleITK:
//! down to a coarser spacing along one axis with nearest neighbour, then back to the original
//! grid (shape and affine) with linear interpolation. Both grids share the direction cosines and
//! differ only along that axis, so the work is 1D along it; the other axes map voxel to voxel.

use rayon::prelude::*;

use crate::exec::kspace::row_groups;
use crate::volume::Volume;

/// Replaces `vol`'s voxels (same grid) with TorchIO's down-then-up resampling along array axis
/// `axis` by the factor `downsampling`:
///
/// - coarse grid (`Resample.get_reference_image`): spacing `s' = s·downsampling`, size
///   `m = floor(n·s / s')`, centred on the original (the centre is the mean of the first and
///   last voxel centres, so `c(q) = (n-1)/2 + (q - (m-1)/2)·s'/s` in input voxels);
/// - down (nearest): coarse sample `q` takes input voxel `floor(c(q) + 0.5)` (ITK rounds half
///   up);
/// - up (linear, default pixel value 0): voxel `p` sits at `x = (m-1)/2 + (p - (n-1)/2)·s/s'`
///   of the coarse grid; outside ITK's buffer `[-0.5, m - 0.5)` it becomes 0 (so the end planes
///   go to 0 whenever the coarse grid falls short of them), inside it interpolates linearly with
///   the edge sample repeated over the last half voxel, in f64, rounded to f32.
///
/// An axis one voxel long is left alone (TorchIO keeps singleton sizes, an identity). Difference:
/// a factor so large that `m = 0` (TorchIO fails) gives one coarse sample.
pub fn anisotropy(vol: &mut Volume, axis: u8, downsampling: f64) {
    let a = axis as usize;
    let n = vol.dims[a];
    if n == 1 {
        return;
    }
    let s = vol.spacing()[a];
    let coarse = s * downsampling;
    let m = ((n as f64 * s / coarse).floor() as usize).max(1);
    let pick: Vec<usize> = (0..m)
        .map(|q| {
            let c = (n as f64 - 1.0) / 2.0 + (q as f64 - (m as f64 - 1.0) / 2.0) * (coarse / s);
            ((c + 0.5).floor().max(0.0) as usize).min(n - 1)
        })
        .collect();
    let taps: Vec<Tap> = (0..n)
        .map(|p| {
            let x = (m as f64 - 1.0) / 2.0 + (p as f64 - (n as f64 - 1.0) / 2.0) * (s / coarse);
            if !(-0.5..m as f64 - 0.5).contains(&x) {
                return Tap::Zero;
            }
            let base = x.floor().max(0.0) as usize;
            let d = x - base as f64;
            if d <= 0.0 || base + 1 >= m {
                Tap::One(base.min(m - 1))
            } else {
                Tap::Two(base, d)
            }
        })
        .collect();
    resample_axis(&mut vol.data, vol.dims, a, &pick, &taps);
}

/// How one output voxel along the axis is made from the coarse samples.
#[derive(Clone, Copy, Debug)]
enum Tap {
    /// Outside the coarse grid: ITK's default pixel value.
    Zero,
    One(usize),
    /// `v[q] + (v[q + 1] - v[q])·d`.
    Two(usize, f64),
}

/// Down-samples every line along `axis` to `pick`, then rebuilds it with `taps`, in place.
fn resample_axis(data: &mut [f32], dims: [usize; 3], axis: usize, pick: &[usize], taps: &[Tap]) {
    let ni = dims[0];
    let m = pick.len();
    if axis == 0 {
        data.par_chunks_mut(ni).for_each_init(
            || vec![0f32; m],
            |down, row| {
                for (d, &q) in down.iter_mut().zip(pick) {
                    *d = row[q];
                }
                for (o, tap) in row.iter_mut().zip(taps) {
                    *o = match *tap {
                        Tap::Zero => 0.0,
                        Tap::One(q) => down[q],
                        Tap::Two(q, d) => lerp(down[q], down[q + 1], d),
                    };
                }
            },
        );
        return;
    }
    // Axes 1 and 2: the lines are the columns of planes of rows; work on whole rows.
    row_groups(data, dims, axis, 1)
        .into_par_iter()
        .for_each_init(
            || vec![0f32; m * ni],
            |down, (_, mut rows)| {
                for (d, &q) in down.chunks_mut(ni).zip(pick) {
                    d.copy_from_slice(rows[q]);
                }
                for (row, tap) in rows.iter_mut().zip(taps) {
                    match *tap {
                        Tap::Zero => row.fill(0.0),
                        Tap::One(q) => row.copy_from_slice(&down[q * ni..][..ni]),
                        Tap::Two(q, d) => {
                            let (lo, hi) = (&down[q * ni..][..ni], &down[(q + 1) * ni..][..ni]);
                            for ((o, &x), &y) in row.iter_mut().zip(lo).zip(hi) {
                                *o = lerp(x, y, d);
                            }
                        }
                    }
                }
            },
        );
}

/// ITK's linear step in the pixel's real type (double for f32), rounded to f32.
#[inline]
fn lerp(a: f32, b: f32, d: f64) -> f32 {
    let a = a as f64;
    (a + (b as f64 - a) * d) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::IDENTITY;

    fn line(n: usize, axis: usize) -> Volume {
        let mut dims = [1usize; 3];
        dims[axis] = n;
        Volume::new((0..n).map(|v| v as f32 + 1.0).collect(), dims, IDENTITY).unwrap()
    }

    #[test]
    fn downsampling_by_two_on_an_exact_grid_keeps_every_other_voxel_and_zeroes_the_uncovered_end() {
        // n = 41, s' = 2: m = 20 coarse samples at input voxels 1, 3, ..., 39; voxel 40 lies at
        // x = 19.5 = m - 0.5, outside ITK's buffer.
        for axis in 0..3 {
            let mut v = line(41, axis);
            anisotropy(&mut v, axis as u8, 2.0);
            assert_eq!(
                v.data[0], 2.0,
                "axis {axis}: first voxel is the edge sample"
            );
            assert_eq!(v.data[1], 2.0);
            assert_eq!(v.data[2], 3.0, "halfway between voxels 1 and 3");
            assert_eq!(v.data[39], 40.0);
            assert_eq!(v.data[40], 0.0, "axis {axis}: past the coarse grid");
        }
    }

    #[test]
    fn a_factor_of_one_is_the_identity() {
        let mut v = line(33, 1);
        let before = v.data.clone();
        anisotropy(&mut v, 1, 1.0);
        assert_eq!(v.data, before);
    }
}
