//! Voxel-to-world orientation and a zero-copy RAS-canonical view of a volume.
//!
//! [`Orientation::from_affine`] follows nibabel's `io_orientation`: the 3x3 part
//! of the affine is normalised by its column norms, reduced to its closest
//! orthogonal matrix (polar decomposition, which is what nibabel's `u @ v` from the
//! SVD computes), and then, taking the voxel axes from the most to the least
//! axis-aligned one (largest absolute component first, stable on ties), the world
//! axis with the largest absolute component is picked and removed from further
//! consideration, so two voxel axes never map to one world axis. Oblique affines
//! therefore snap to the nearest axis-aligned orientation.
//!
//! [`CanonicalView`] maps RAS-canonical indices `(x, y, z)` — `x` increasing to
//! the patient's Right, `y` to Anterior, `z` to Superior — onto storage offsets
//! with per-axis strides, without copying the voxel data.

#![allow(clippy::needless_range_loop)] // 3-axis index loops read best as such.

use std::fmt;

/// Errors building an orientation or a view.
#[derive(Debug, Clone, PartialEq)]
pub enum OrientError {
    /// The affine contains NaN or infinite values.
    NonFiniteAffine,
    /// The data length does not match `ni * nj * nk * nt`.
    DataLength { expected: usize, actual: usize },
    /// A dimension or the frame count is zero.
    EmptyDimension,
}

impl fmt::Display for OrientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrientError::NonFiniteAffine => write!(f, "affine contains non-finite values"),
            OrientError::DataLength { expected, actual } => {
                write!(f, "volume has {actual} values, dims imply {expected}")
            }
            OrientError::EmptyDimension => write!(f, "volume has a zero-sized dimension"),
        }
    }
}

impl std::error::Error for OrientError {}

/// Orientation of the voxel axes relative to world RAS+ axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Orientation {
    /// For each voxel axis (i, j, k): the world axis it follows
    /// (0 = x Left→Right, 1 = y Posterior→Anterior, 2 = z Inferior→Superior).
    pub world_axis: [usize; 3],
    /// For each voxel axis: `true` when increasing the voxel index moves towards
    /// the negative world direction (Left, Posterior or Inferior).
    pub flipped: [bool; 3],
}

type Mat3 = [[f64; 3]; 3];

fn det3(m: &Mat3) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// Inverse-transpose of a 3x3 matrix (cofactor matrix / determinant).
fn inv_transpose3(m: &Mat3) -> Option<Mat3> {
    let d = det3(m);
    if d.abs() < 1e-12 || !d.is_finite() {
        return None;
    }
    let mut c = [[0.0; 3]; 3];
    for (r, row) in c.iter_mut().enumerate() {
        for (col, v) in row.iter_mut().enumerate() {
            let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
            let (c1, c2) = ((col + 1) % 3, (col + 2) % 3);
            *v = (m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]) / d;
        }
    }
    Some(c)
}

/// Closest orthogonal matrix (polar factor) via Newton's iteration
/// `X <- (X + X^-T) / 2`; falls back to the input when it is singular.
fn polar_orthogonal(m: &Mat3) -> Mat3 {
    let mut x = *m;
    for _ in 0..100 {
        let Some(it) = inv_transpose3(&x) else {
            return *m;
        };
        let mut delta: f64 = 0.0;
        for r in 0..3 {
            for c in 0..3 {
                let n = 0.5 * (x[r][c] + it[r][c]);
                delta = delta.max((n - x[r][c]).abs());
                x[r][c] = n;
            }
        }
        if delta < 1e-14 {
            break;
        }
    }
    x
}

/// Column norms of the affine's 3x3 part: the voxel size along i, j, k in mm.
pub fn voxel_sizes(affine: &[[f64; 4]; 4]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (c, o) in out.iter_mut().enumerate() {
        *o = (0..3)
            .map(|r| affine[r][c] * affine[r][c])
            .sum::<f64>()
            .sqrt();
    }
    out
}

impl Orientation {
    /// Orientation of the voxel axes (nibabel `io_orientation` semantics).
    pub fn from_affine(affine: &[[f64; 4]; 4]) -> Result<Self, OrientError> {
        if affine.iter().flatten().any(|v| !v.is_finite()) {
            return Err(OrientError::NonFiniteAffine);
        }
        let zooms = voxel_sizes(affine);
        let mut rs: Mat3 = [[0.0; 3]; 3];
        for r in 0..3 {
            for c in 0..3 {
                let z = if zooms[c] == 0.0 { 1.0 } else { zooms[c] };
                rs[r][c] = affine[r][c] / z;
            }
        }
        let mut q = polar_orthogonal(&rs);
        let mut world_axis = [usize::MAX; 3];
        let mut flipped = [false; 3];
        let mut used = [false; 3];
        // Strongest voxel axes first (largest max |component|), stable on ties,
        // so an axis is labelled the same whatever the storage order.
        let mut order = [0usize, 1, 2];
        let strength = |ax: usize| (0..3).map(|w| q[w][ax] * q[w][ax]).fold(0.0, f64::max);
        order.sort_by(|&a, &b| strength(b).total_cmp(&strength(a)));
        for ax in order {
            // np.argmax semantics: the first maximal component wins ties.
            let mut best = None;
            let mut best_abs = 1e-8;
            for (w, row) in q.iter().enumerate() {
                if !used[w] && row[ax].abs() > best_abs {
                    best_abs = row[ax].abs();
                    best = Some(w);
                }
            }
            if let Some(w) = best {
                world_axis[ax] = w;
                flipped[ax] = q[w][ax] < 0.0;
                used[w] = true;
                q[w] = [0.0; 3];
            }
        }
        // Degenerate (zero) columns: give them the remaining world axes in order.
        for ax in 0..3 {
            if world_axis[ax] == usize::MAX {
                let w = (0..3)
                    .find(|&w| !used[w])
                    .expect("a free world axis remains");
                world_axis[ax] = w;
                used[w] = true;
            }
        }
        Ok(Orientation {
            world_axis,
            flipped,
        })
    }

    /// Axis codes as in nibabel's `aff2axcodes`, e.g. `['R', 'A', 'S']` or `['L', 'P', 'S']`:
    /// the world direction that each voxel axis increases towards.
    pub fn axcodes(&self) -> [char; 3] {
        const POS: [char; 3] = ['R', 'A', 'S'];
        const NEG: [char; 3] = ['L', 'P', 'I'];
        let mut out = ['?'; 3];
        for ax in 0..3 {
            let w = self.world_axis[ax];
            out[ax] = if self.flipped[ax] { NEG[w] } else { POS[w] };
        }
        out
    }

    /// The voxel axis that follows world axis `w` (0 = x, 1 = y, 2 = z).
    pub fn voxel_axis_of(&self, w: usize) -> usize {
        self.world_axis
            .iter()
            .position(|&a| a == w)
            .expect("orientation is a permutation")
    }
}

/// A zero-copy view of a (possibly 4D) volume indexed in RAS-canonical order.
///
/// Index `[x, y, z]`: `x = 0` is the patient's most Left voxel plane, `y = 0` the
/// most Posterior, `z = 0` the most Inferior.
#[derive(Debug, Clone, Copy)]
pub struct CanonicalView<'a, T = f32> {
    data: &'a [T],
    dims: [usize; 3],
    frames: usize,
    orientation: Orientation,
    shape: [usize; 3],
    strides: [isize; 3],
    origin: usize,
    spacing: [f64; 3],
}

impl<'a, T: Copy> CanonicalView<'a, T> {
    /// Builds the view. `data.len()` must equal `ni * nj * nk * frames` (`frames >= 1`).
    pub fn new(
        data: &'a [T],
        dims: [usize; 3],
        frames: usize,
        affine: &[[f64; 4]; 4],
    ) -> Result<Self, OrientError> {
        if dims.contains(&0) || frames == 0 {
            return Err(OrientError::EmptyDimension);
        }
        let expected = dims
            .iter()
            .try_fold(frames, |acc, &d| acc.checked_mul(d))
            .unwrap_or(usize::MAX);
        if data.len() != expected {
            return Err(OrientError::DataLength {
                expected,
                actual: data.len(),
            });
        }
        let orientation = Orientation::from_affine(affine)?;
        let zooms = voxel_sizes(affine);
        let storage_strides = [1usize, dims[0], dims[0] * dims[1]];
        let mut shape = [0; 3];
        let mut strides = [0isize; 3];
        let mut spacing = [0.0; 3];
        let mut origin = 0usize;
        for w in 0..3 {
            let ax = orientation.voxel_axis_of(w);
            shape[w] = dims[ax];
            spacing[w] = if zooms[ax] > 0.0 { zooms[ax] } else { 1.0 };
            let s = storage_strides[ax] as isize;
            if orientation.flipped[ax] {
                strides[w] = -s;
                origin += (dims[ax] - 1) * storage_strides[ax];
            } else {
                strides[w] = s;
            }
        }
        Ok(CanonicalView {
            data,
            dims,
            frames,
            orientation,
            shape,
            strides,
            origin,
            spacing,
        })
    }

    /// Number of voxels along x (L→R), y (P→A), z (I→S).
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Voxel size in mm along x, y, z.
    pub fn spacing(&self) -> [f64; 3] {
        self.spacing
    }

    /// Storage-order dims `[ni, nj, nk]`.
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// Number of frames (1 for a 3D volume).
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The orientation derived from the affine.
    pub fn orientation(&self) -> Orientation {
        self.orientation
    }

    /// Storage stride (in elements, possibly negative) of each RAS axis.
    pub fn strides(&self) -> [isize; 3] {
        self.strides
    }

    /// All voxel data (every frame).
    pub fn data(&self) -> &'a [T] {
        self.data
    }

    /// The voxels of frame `t` in storage order.
    pub fn frame_data(&self, t: usize) -> &'a [T] {
        let n = self.dims[0] * self.dims[1] * self.dims[2];
        &self.data[t * n..(t + 1) * n]
    }

    /// Offset inside a frame of RAS-canonical index `[x, y, z]`.
    #[inline]
    pub fn offset(&self, idx: [usize; 3]) -> usize {
        let mut o = self.origin as isize;
        for w in 0..3 {
            o += idx[w] as isize * self.strides[w];
        }
        o as usize
    }

    /// Voxel value at RAS-canonical `[x, y, z]` in frame `t`.
    ///
    /// Panics when out of bounds.
    pub fn get(&self, idx: [usize; 3], t: usize) -> T {
        for w in 0..3 {
            assert!(idx[w] < self.shape[w], "index out of bounds");
        }
        self.frame_data(t)[self.offset(idx)]
    }
}
