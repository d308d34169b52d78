//! The f32 volume every transform works on: voxels in NIfTI order (i fastest) with the
//! voxel → RAS+ mm affine. A 2D image is a volume one voxel deep.

use anyhow::{Result, bail};

pub type Affine = [[f64; 4]; 4];

#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    pub data: Vec<f32>,
    /// `[ni, nj, nk]`; `nk == 1` for 2D images.
    pub dims: [usize; 3],
    pub affine: Affine,
}

impl Volume {
    pub fn new(data: Vec<f32>, dims: [usize; 3], affine: Affine) -> Result<Volume> {
        let n = dims.iter().product::<usize>();
        if n == 0 || data.len() != n {
            bail!(
                "volume of {dims:?} voxels needs {n} values, got {}",
                data.len()
            );
        }
        if !affine.iter().flatten().all(|v| v.is_finite()) || det3(&affine).abs() < 1e-12 {
            bail!("the affine is singular or not finite: {affine:?}");
        }
        Ok(Volume { data, dims, affine })
    }

    /// The same geometry with no voxels (to be filled by a transform).
    pub fn clone_empty(&self) -> Volume {
        Volume {
            data: Vec::new(),
            dims: self.dims,
            affine: self.affine,
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// A 2D image (`nk == 1`): geometric transforms stay in the plane.
    pub fn is_2d(&self) -> bool {
        self.dims[2] == 1
    }

    #[inline(always)]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }

    /// Voxel size in mm along each array axis (column norms of the affine).
    pub fn spacing(&self) -> [f64; 3] {
        std::array::from_fn(|c| {
            (0..3)
                .map(|r| self.affine[r][c] * self.affine[r][c])
                .sum::<f64>()
                .sqrt()
        })
    }

    /// World (RAS mm) position of the volume's centre voxel `(n - 1) / 2`.
    pub fn centre_world(&self) -> [f64; 3] {
        let c = self.dims.map(|n| (n as f64 - 1.0) / 2.0);
        apply(&self.affine, c)
    }

    /// Smallest and largest voxel (NaNs ignored), in parallel over 8-wide lanes that
    /// compile to SIMD min/max.
    pub fn min_max(&self) -> (f32, f32) {
        use rayon::prelude::*;
        self.data
            .par_chunks(1 << 16)
            .map(|c| {
                let mut lo = [f32::INFINITY; 8];
                let mut hi = [f32::NEG_INFINITY; 8];
                let mut it = c.chunks_exact(8);
                for v in &mut it {
                    for l in 0..8 {
                        lo[l] = if v[l] < lo[l] { v[l] } else { lo[l] };
                        hi[l] = if v[l] > hi[l] { v[l] } else { hi[l] };
                    }
                }
                let tail = it.remainder().iter();
                let lo = lo
                    .into_iter()
                    .chain(tail.clone().copied())
                    .fold(f32::INFINITY, f32::min);
                let hi = hi
                    .into_iter()
                    .chain(tail.copied())
                    .fold(f32::NEG_INFINITY, f32::max);
                (lo, hi)
            })
            .reduce(
                || (f32::INFINITY, f32::NEG_INFINITY),
                |a, b| (a.0.min(b.0), a.1.max(b.1)),
            )
    }
}

/// A zeroed buffer for `n` voxels. Large ones ask the kernel for transparent huge pages first
/// (as numpy does): a fresh 35 MB volume then costs ~20 page faults instead of ~8,500, which
/// is most of the time of a flip or a gamma.
pub fn zeroed(n: usize) -> Vec<f32> {
    let v = vec![0f32; n];
    advise_huge_pages(&v);
    v
}

/// A copy of `src` in a buffer from [`zeroed`].
pub fn copied(src: &[f32]) -> Vec<f32> {
    let mut v = zeroed(src.len());
    v.copy_from_slice(src);
    v
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(v: &[f32]) {
    const HUGE: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let end = start + std::mem::size_of_val(v);
    let first = start.div_ceil(HUGE) * HUGE;
    if end >= first + HUGE {
        // SAFETY: the range lies inside `v`'s allocation; MADV_HUGEPAGE only changes how the
        // kernel backs it, never its contents.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                (end - first) / HUGE * HUGE,
                libc::MADV_HUGEPAGE,
            )
        };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_: &[f32]) {}

/// `A · [p, 1]` (first three rows).
pub fn apply(a: &Affine, p: [f64; 3]) -> [f64; 3] {
    std::array::from_fn(|r| a[r][0] * p[0] + a[r][1] * p[1] + a[r][2] * p[2] + a[r][3])
}

pub fn mul(a: &Affine, b: &Affine) -> Affine {
    std::array::from_fn(|r| std::array::from_fn(|c| (0..4).map(|k| a[r][k] * b[k][c]).sum()))
}

pub fn det3(a: &Affine) -> f64 {
    a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
        - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
}

/// Inverse of an affine 4x4 (last row 0 0 0 1).
pub fn invert(a: &Affine) -> Affine {
    let d = det3(a);
    let m = |r: usize, c: usize| a[r][c];
    let mut inv = [[0.0; 4]; 4];
    inv[0][0] = (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1)) / d;
    inv[0][1] = (m(0, 2) * m(2, 1) - m(0, 1) * m(2, 2)) / d;
    inv[0][2] = (m(0, 1) * m(1, 2) - m(0, 2) * m(1, 1)) / d;
    inv[1][0] = (m(1, 2) * m(2, 0) - m(1, 0) * m(2, 2)) / d;
    inv[1][1] = (m(0, 0) * m(2, 2) - m(0, 2) * m(2, 0)) / d;
    inv[1][2] = (m(0, 2) * m(1, 0) - m(0, 0) * m(1, 2)) / d;
    inv[2][0] = (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0)) / d;
    inv[2][1] = (m(0, 1) * m(2, 0) - m(0, 0) * m(2, 1)) / d;
    inv[2][2] = (m(0, 0) * m(1, 1) - m(0, 1) * m(1, 0)) / d;
    for row in inv.iter_mut().take(3) {
        row[3] = -(0..3).map(|c| row[c] * a[c][3]).sum::<f64>();
    }
    inv[3][3] = 1.0;
    inv
}

pub const IDENTITY: Affine = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_undoes_the_affine() {
        let a = [
            [-2.0, 0.1, 0.0, 30.0],
            [0.2, 1.9, 0.3, -12.0],
            [0.0, -0.4, 2.2, 7.5],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let p = mul(&a, &invert(&a));
        for r in 0..4 {
            for c in 0..4 {
                assert!((p[r][c] - IDENTITY[r][c]).abs() < 1e-12);
            }
        }
    }
}
