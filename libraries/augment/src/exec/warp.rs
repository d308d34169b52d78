//! Spatial transforms (flip, affine, elastic) fused into one resampling pass: a chain of maps is
//! composed into the sample position of every output voxel, and the input is interpolated once.
//!
//! Conventions (TorchIO's, through SimpleITK): the output grid is the input grid; a transform
//! maps an output point to the input point sampled; a sample is inside the input when each
//! voxel coordinate lies in [-0.5, n - 0.5) (ITK's buffer test), linear interpolation clamps the
//! neighbours at the border, nearest rounds half up; outside points get the pad value.

use rayon::prelude::*;

use crate::rng::{Purpose, Stream};
use crate::spec::{Centre, Interpolation, PadName, PadValue};
use crate::volume::{Affine, IDENTITY, Volume, invert, mul};

/// One step of a warp, in the order the transforms were applied to the image.
#[derive(Clone, Debug)]
pub enum Step {
    /// Output world point → input world point (RAS mm).
    Linear(Affine),
    Elastic(ElasticField),
}

/// A cubic B-spline displacement field over the volume: control points `c = 0..n` per axis at
/// voxel coordinate `(c - 1) · h`, `h = (dim - 1) / (n - 3)`, so the grid spans the voxel
/// centres with one extra control point outside each border (ITK's layout for order 3).
#[derive(Clone, Debug)]
pub struct ElasticField {
    pub n: [usize; 3],
    /// Displacements in mm (RAS), `[i, j, k]` order i fastest, three components each.
    pub coef: Vec<[f64; 3]>,
}

impl ElasticField {
    /// Draws the control-point displacements (uniform in ±max mm) from the variant's field
    /// stream, then pins the locked borders on all three axes.
    pub fn draw(
        seed: u64,
        variant: u32,
        slot: u32,
        n: [u32; 3],
        max_mm: [f64; 3],
        locked_borders: u8,
        flat: bool,
    ) -> ElasticField {
        let n = n.map(|v| v as usize);
        let mut d = Stream::new(seed, variant, slot, Purpose::Field).reader();
        let total = n[0] * n[1] * n[2];
        let mut coef = Vec::with_capacity(total);
        for _ in 0..total {
            coef.push(std::array::from_fn(|c| d.uniform(-max_mm[c], max_mm[c])));
        }
        let lock = |c: usize, len: usize| match locked_borders {
            0 => false,
            1 => c == 0 || c + 1 == len,
            _ => c <= 1 || c + 2 >= len,
        };
        for k in 0..n[2] {
            for j in 0..n[1] {
                for i in 0..n[0] {
                    let v = &mut coef[i + n[0] * (j + n[1] * k)];
                    if lock(i, n[0]) || lock(j, n[1]) || (!flat && lock(k, n[2])) {
                        *v = [0.0; 3];
                    }
                    if flat {
                        v[2] = 0.0;
                    }
                }
            }
        }
        ElasticField { n, coef }
    }
}

/// Cubic B-spline weights of the 4 control points around `u` (in grid cells), and the first.
#[inline(always)]
fn bspline(u: f32, cells: usize) -> (usize, [f32; 4]) {
    // Truncation is floor for u >= 0; points before the grid use its first cell.
    let cell = (u.max(0.0) as usize).min(cells.saturating_sub(1));
    let t = u - cell as f32;
    let it = 1.0 - t;
    let t2 = t * t;
    let t3 = t2 * t;
    (
        cell,
        [
            it * it * it / 6.0,
            (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0,
            (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0,
            t3 / 6.0,
        ],
    )
}

/// The field in voxel units of one grid (its displacement converted by the inverse affine).
pub(crate) struct VoxelField {
    pub(crate) n: [usize; 3],
    /// Voxel coordinate → grid units.
    pub(crate) scale: [f32; 3],
    cells: [usize; 3],
    pub(crate) coef: Vec<[f32; 3]>,
}

impl VoxelField {
    fn new(f: &ElasticField, dims: [usize; 3], inv: &Affine) -> VoxelField {
        let cells = f.n.map(|n| n - 3);
        let scale = std::array::from_fn(|a| {
            if dims[a] > 1 {
                cells[a] as f32 / (dims[a] - 1) as f32
            } else {
                0.0
            }
        });
        let coef = f
            .coef
            .iter()
            .map(|d| std::array::from_fn(|r| (0..3).map(|c| inv[r][c] * d[c]).sum::<f64>() as f32))
            .collect();
        VoxelField {
            n: f.n,
            scale,
            cells,
            coef,
        }
    }

    /// Displacement (voxels) at any voxel coordinate: 64 taps.
    #[inline(always)]
    fn at(&self, x: [f32; 3]) -> [f32; 3] {
        let (ci, wi) = bspline(x[0] * self.scale[0], self.cells[0]);
        let (cj, wj) = bspline(x[1] * self.scale[1], self.cells[1]);
        let (ck, wk) = bspline(x[2] * self.scale[2], self.cells[2]);
        let mut d = [0f32; 3];
        for (c, &w3) in wk.iter().enumerate() {
            for (b, &w2) in wj.iter().enumerate() {
                let base = self.n[0] * ((cj + b) + self.n[1] * (ck + c));
                for (a, &w1) in wi.iter().enumerate() {
                    let w = w1 * w2 * w3;
                    let v = self.coef[base + ci + a];
                    d[0] += w * v[0];
                    d[1] += w * v[1];
                    d[2] += w * v[2];
                }
            }
        }
        d
    }

    /// The row `(j, k)` contracted over j and k: one coefficient triple per i control point.
    fn row(&self, j: usize, k: usize, out: &mut Vec<[f32; 3]>) {
        let (cj, wj) = bspline(j as f32 * self.scale[1], self.cells[1]);
        let (ck, wk) = bspline(k as f32 * self.scale[2], self.cells[2]);
        out.clear();
        out.resize(self.n[0], [0.0; 3]);
        for (c, &w3) in wk.iter().enumerate() {
            for (b, &w2) in wj.iter().enumerate() {
                let w = w2 * w3;
                let base = self.n[0] * ((cj + b) + self.n[1] * (ck + c));
                for (a, o) in out.iter_mut().enumerate() {
                    let v = self.coef[base + a];
                    o[0] += w * v[0];
                    o[1] += w * v[1];
                    o[2] += w * v[2];
                }
            }
        }
    }
}

/// TorchIO's affine as an output → input world map (RAS): `R⁻¹(S(p))`, with the rigid motion
/// of the content `R(p) = Rz·Rx·Ry·(p − c) + c + t` (ITK's Euler3D Z-X-Y order, angles
/// converted from ITK's LPS to RAS) and `S(p) = (p − c) / s + c` (scale 1.5: anatomy looks 1.5
/// times larger). So `translation: [4, 0, 0]` moves the anatomy 4 mm to the right. Checked
/// against the voxel map TorchIO 1.2.1 / SimpleITK 2.5 builds (fixtures `affine_*`).
pub fn affine_map(
    scales: [f64; 3],
    degrees: [f64; 3],
    translation: [f64; 3],
    c: [f64; 3],
) -> Affine {
    let rot = euler_zxy(degrees);
    let lift = |m: [[f64; 3]; 3], t: [f64; 3]| -> Affine {
        let mut a = IDENTITY;
        for r in 0..3 {
            a[r][..3].copy_from_slice(&m[r]);
            a[r][3] = t[r];
        }
        a
    };
    // R(p) = rot·p + (c + t − rot·c)
    let rc: [f64; 3] = std::array::from_fn(|r| (0..3).map(|k| rot[r][k] * c[k]).sum());
    let r = lift(rot, std::array::from_fn(|i| c[i] + translation[i] - rc[i]));
    let inv_s = scales.map(|s| 1.0 / s);
    let s = lift(
        [
            [inv_s[0], 0.0, 0.0],
            [0.0, inv_s[1], 0.0],
            [0.0, 0.0, inv_s[2]],
        ],
        std::array::from_fn(|i| c[i] - inv_s[i] * c[i]),
    );
    mul(&invert(&r), &s)
}

/// ITK's Euler3D rotation `Rz·Rx·Ry` (right-handed, angles in degrees about x, y, z), the one
/// TorchIO's affine and motion both use.
pub fn euler_zxy(degrees: [f64; 3]) -> [[f64; 3]; 3] {
    let [ax, ay, az] = degrees.map(f64::to_radians);
    let rx = [
        [1.0, 0.0, 0.0],
        [0.0, ax.cos(), -ax.sin()],
        [0.0, ax.sin(), ax.cos()],
    ];
    let ry = [
        [ay.cos(), 0.0, ay.sin()],
        [0.0, 1.0, 0.0],
        [-ay.sin(), 0.0, ay.cos()],
    ];
    let rz = [
        [az.cos(), -az.sin(), 0.0],
        [az.sin(), az.cos(), 0.0],
        [0.0, 0.0, 1.0],
    ];
    mat3(&mat3(&rz, &rx), &ry)
}

pub fn mat3(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

/// The world centre of an affine transform: the volume's centre or the origin.
pub fn centre_of(vol: &Volume, centre: Centre) -> [f64; 3] {
    match centre {
        Centre::Image => vol.centre_world(),
        Centre::Origin => [0.0; 3],
    }
}

/// The flip of array `axes` as an output → input world map.
pub fn flip_map(vol: &Volume, axes: &[u8]) -> Affine {
    let mut f = IDENTITY;
    for &a in axes {
        let a = a as usize;
        f[a][a] = -1.0;
        f[a][3] = vol.dims[a] as f64 - 1.0;
    }
    mul(&mul(&vol.affine, &f), &invert(&vol.affine))
}

/// The pad value TorchIO would use: the minimum, or the mean of the border voxels (all of them,
/// or those below the border's Otsu threshold), or a number.
pub fn pad_value(vol: &Volume, pad: &PadValue) -> f32 {
    match pad {
        PadValue::Value(v) => *v as f32,
        PadValue::Named(PadName::Minimum) => vol.min_max().0,
        PadValue::Named(name) => {
            let border = border_values(vol);
            let values: Vec<f32> = if *name == PadName::Otsu {
                let t = otsu_threshold(&border);
                border.iter().copied().filter(|&v| v <= t).collect()
            } else {
                border
            };
            (values.iter().map(|&v| v as f64).sum::<f64>() / values.len().max(1) as f64) as f32
        }
    }
}

fn border_values(vol: &Volume) -> Vec<f32> {
    let [ni, nj, nk] = vol.dims;
    let mut out = Vec::new();
    for k in 0..nk {
        for j in 0..nj {
            for i in 0..ni {
                let edge = i == 0 || j == 0 || i + 1 == ni || j + 1 == nj;
                let edge = edge || (nk > 1 && (k == 0 || k + 1 == nk));
                if edge {
                    out.push(vol.data[vol.index(i, j, k)]);
                }
            }
        }
    }
    out
}

/// Otsu's threshold over a 256-bin histogram.
fn otsu_threshold(v: &[f32]) -> f32 {
    let (lo, hi) = v
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if hi <= lo || hi.is_nan() {
        return hi;
    }
    let bins = 256usize;
    let w = (hi - lo) / bins as f32;
    let mut hist = vec![0f64; bins];
    for &x in v {
        hist[(((x - lo) / w) as usize).min(bins - 1)] += 1.0;
    }
    let total: f64 = hist.iter().sum();
    let sum_all: f64 = hist.iter().enumerate().map(|(i, h)| i as f64 * h).sum();
    let (mut w0, mut sum0, mut best, mut best_t) = (0.0, 0.0, -1.0, 0usize);
    for (t, h) in hist.iter().enumerate() {
        w0 += h;
        sum0 += t as f64 * h;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let m0 = sum0 / w0;
        let m1 = (sum_all - sum0) / w1;
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_t = t;
        }
    }
    lo + (best_t as f32 + 1.0) * w
}

/// Steps in voxel coordinates, in evaluation order (the last transform applied first).
pub(crate) enum VoxelStep {
    Linear([[f32; 4]; 3]),
    Elastic(VoxelField),
}

pub(crate) fn voxel_steps(vol: &Volume, steps: &[Step]) -> Vec<VoxelStep> {
    let inv = invert(&vol.affine);
    let mut out: Vec<VoxelStep> = Vec::new();
    let mut pending: Option<Affine> = None;
    let to_f32 = |m: &Affine| -> [[f32; 4]; 3] { std::array::from_fn(|r| m[r].map(|v| v as f32)) };
    for s in steps.iter().rev() {
        match s {
            Step::Linear(m) => {
                let v = mul(&mul(&inv, m), &vol.affine);
                pending = Some(match pending {
                    Some(p) => mul(&v, &p),
                    None => v,
                });
            }
            Step::Elastic(f) => {
                if let Some(p) = pending.take() {
                    out.push(VoxelStep::Linear(to_f32(&p)));
                }
                out.push(VoxelStep::Elastic(VoxelField::new(f, vol.dims, &inv)));
            }
        }
    }
    if let Some(p) = pending {
        out.push(VoxelStep::Linear(to_f32(&p)));
    }
    out
}

/// Resamples `vol` through the chain `steps` (in application order) in one pass.
pub fn resample(vol: &Volume, steps: &[Step], interpolation: Interpolation, pad: f32) -> Vec<f32> {
    let vsteps = voxel_steps(vol, steps);
    let [ni, nj, _] = vol.dims;
    let mut out = crate::volume::zeroed(vol.len());
    out.par_chunks_mut(ni)
        .enumerate()
        .with_min_len(8)
        .for_each_init(
            || (vec![[0f32; 3]; ni], Vec::new()),
            |(pos, rowbuf), (r, row)| {
                let (j, k) = (r % nj, r / nj);
                let mut first = true;
                for s in &vsteps {
                    match s {
                        VoxelStep::Linear(m) => {
                            if first {
                                // The row's start once, then the same sums per voxel.
                                let (jf, kf) = (j as f32, k as f32);
                                let base: [f32; 3] =
                                    std::array::from_fn(|a| m[a][1] * jf + m[a][2] * kf);
                                for (i, p) in pos.iter_mut().enumerate() {
                                    let x = i as f32;
                                    *p = [
                                        m[0][0] * x + base[0] + m[0][3],
                                        m[1][0] * x + base[1] + m[1][3],
                                        m[2][0] * x + base[2] + m[2][3],
                                    ];
                                }
                            } else {
                                for p in pos.iter_mut() {
                                    let x = *p;
                                    *p = std::array::from_fn(|a| {
                                        m[a][0] * x[0] + m[a][1] * x[1] + m[a][2] * x[2] + m[a][3]
                                    });
                                }
                            }
                        }
                        VoxelStep::Elastic(f) => {
                            if first {
                                // On the grid: contract j and k once per row, then 4 taps per voxel.
                                f.row(j, k, rowbuf);
                                for (i, p) in pos.iter_mut().enumerate() {
                                    let (ci, w) = bspline(i as f32 * f.scale[0], f.cells[0]);
                                    let mut d = [0f32; 3];
                                    for (a, &wa) in w.iter().enumerate() {
                                        let c = rowbuf[ci + a];
                                        d[0] += wa * c[0];
                                        d[1] += wa * c[1];
                                        d[2] += wa * c[2];
                                    }
                                    *p = [i as f32 + d[0], j as f32 + d[1], k as f32 + d[2]];
                                }
                            } else {
                                for p in pos.iter_mut() {
                                    let d = f.at(*p);
                                    *p = [p[0] + d[0], p[1] + d[1], p[2] + d[2]];
                                }
                            }
                        }
                    }
                    first = false;
                }
                if first {
                    for (i, p) in pos.iter_mut().enumerate() {
                        *p = [i as f32, j as f32, k as f32];
                    }
                }
                match interpolation {
                    Interpolation::Linear => trilinear_row(&vol.data, vol.dims, pos, pad, row),
                    Interpolation::Nearest => {
                        for (o, p) in row.iter_mut().zip(pos.iter()) {
                            *o = nearest(&vol.data, vol.dims, *p, pad);
                        }
                    }
                }
            },
        );
    out
}

/// Resamples `vol` on its own grid through one output → input world map.
pub fn resample_world(
    vol: &Volume,
    m: &Affine,
    interpolation: Interpolation,
    pad: f32,
) -> Vec<f32> {
    resample(vol, &[Step::Linear(*m)], interpolation, pad)
}

#[inline(always)]
fn inside(p: [f32; 3], n: [usize; 3]) -> bool {
    p[0] >= -0.5
        && p[1] >= -0.5
        && p[2] >= -0.5
        && p[0] < n[0] as f32 - 0.5
        && p[1] < n[1] as f32 - 0.5
        && p[2] < n[2] as f32 - 0.5
}

/// `floor(x)` for `x >= -1` (inside points are `>= -0.5`) by truncation, without a libm call
/// on x86-64's baseline; `kernels/warp.cu` computes it the same way.
#[inline(always)]
fn floor_from_minus_one(x: f32) -> i32 {
    (x + 1.0) as i32 - 1
}

/// Trilinear interpolation at voxel coordinate `p` (ITK's border rule).
#[inline(always)]
pub fn trilinear(data: &[f32], n: [usize; 3], p: [f32; 3], pad: f32) -> f32 {
    if !inside(p, n) {
        return pad;
    }
    let f = p.map(floor_from_minus_one);
    let t = [p[0] - f[0] as f32, p[1] - f[1] as f32, p[2] - f[2] as f32];
    let sj = n[0];
    let sk = n[0] * n[1];
    let interior = (0..3).all(|a| f[a] >= 0 && (f[a] as usize) + 1 < n[a]);
    let (lo, hi): ([usize; 3], [usize; 3]) = if interior {
        (
            f.map(|v| v as usize),
            std::array::from_fn(|a| f[a] as usize + 1),
        )
    } else {
        (
            f.map(|v| v.max(0) as usize),
            std::array::from_fn(|a| ((f[a] + 1) as usize).min(n[a] - 1)),
        )
    };
    let at = |i: usize, j: usize, k: usize| data[i + sj * j + sk * k];
    let c00 = at(lo[0], lo[1], lo[2]) + t[0] * (at(hi[0], lo[1], lo[2]) - at(lo[0], lo[1], lo[2]));
    let c10 = at(lo[0], hi[1], lo[2]) + t[0] * (at(hi[0], hi[1], lo[2]) - at(lo[0], hi[1], lo[2]));
    let c01 = at(lo[0], lo[1], hi[2]) + t[0] * (at(hi[0], lo[1], hi[2]) - at(lo[0], lo[1], hi[2]));
    let c11 = at(lo[0], hi[1], hi[2]) + t[0] * (at(hi[0], hi[1], hi[2]) - at(lo[0], hi[1], hi[2]));
    let c0 = c00 + t[1] * (c10 - c00);
    let c1 = c01 + t[1] * (c11 - c01);
    c0 + t[2] * (c1 - c0)
}

/// [`trilinear`] for a row of sample points: eight at a time with AVX2 gathers where the CPU
/// has them (the same operations in the same order, so the same bits), else one by one.
pub fn trilinear_row(data: &[f32], n: [usize; 3], pos: &[[f32; 3]], pad: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if data.len() < i32::MAX as usize && std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked above); indices are clamped inside the volume.
        unsafe { trilinear_row_avx2(data, n, pos, pad, out) };
        return;
    }
    for (o, p) in out.iter_mut().zip(pos) {
        *o = trilinear(data, n, *p, pad);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn trilinear_row_avx2(
    data: &[f32],
    n: [usize; 3],
    pos: &[[f32; 3]],
    pad: f32,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let len = out.len().min(pos.len());
    let full = len / 8 * 8;
    let one = _mm256_set1_ps(1.0);
    let ione = _mm256_set1_epi32(1);
    let zero = _mm256_setzero_si256();
    let lo_lim = _mm256_set1_ps(-0.5);
    let hi_lim = n.map(|v| _mm256_set1_ps(v as f32 - 0.5));
    let top = n.map(|v| _mm256_set1_epi32(v as i32 - 1));
    let sj = _mm256_set1_epi32(n[0] as i32);
    let sk = _mm256_set1_epi32((n[0] * n[1]) as i32);
    let padv = _mm256_set1_ps(pad);
    let base = data.as_ptr();
    let mut i = 0;
    while i < full {
        let mut c = [[0f32; 8]; 3];
        for l in 0..8 {
            let p = pos[i + l];
            c[0][l] = p[0];
            c[1][l] = p[1];
            c[2][l] = p[2];
        }
        // SAFETY: each array holds 8 floats.
        let p = c.map(|a| unsafe { _mm256_loadu_ps(a.as_ptr()) });
        let mut inside = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        for a in 0..3 {
            inside = _mm256_and_ps(inside, _mm256_cmp_ps::<_CMP_GE_OQ>(p[a], lo_lim));
            inside = _mm256_and_ps(inside, _mm256_cmp_ps::<_CMP_LT_OQ>(p[a], hi_lim[a]));
        }
        // floor for p >= -1 by truncation (see floor_from_minus_one), then clamped corners.
        let f: [__m256i; 3] = std::array::from_fn(|a| {
            _mm256_sub_epi32(_mm256_cvttps_epi32(_mm256_add_ps(p[a], one)), ione)
        });
        let t: [__m256; 3] = std::array::from_fn(|a| _mm256_sub_ps(p[a], _mm256_cvtepi32_ps(f[a])));
        let lo: [__m256i; 3] =
            std::array::from_fn(|a| _mm256_min_epi32(_mm256_max_epi32(f[a], zero), top[a]));
        let hi: [__m256i; 3] = std::array::from_fn(|a| {
            _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(f[a], ione), zero), top[a])
        });
        let (j0, j1) = (_mm256_mullo_epi32(lo[1], sj), _mm256_mullo_epi32(hi[1], sj));
        let (k0, k1) = (_mm256_mullo_epi32(lo[2], sk), _mm256_mullo_epi32(hi[2], sk));
        let g = |x: __m256i, y: __m256i, z: __m256i| {
            // SAFETY: every corner index is clamped to [0, n - 1] per axis: inside `data`.
            unsafe { _mm256_i32gather_ps::<4>(base, _mm256_add_epi32(x, _mm256_add_epi32(y, z))) }
        };
        let lerp = |a: __m256, b: __m256, w: __m256| {
            _mm256_add_ps(a, _mm256_mul_ps(w, _mm256_sub_ps(b, a)))
        };
        let c00 = lerp(g(lo[0], j0, k0), g(hi[0], j0, k0), t[0]);
        let c10 = lerp(g(lo[0], j1, k0), g(hi[0], j1, k0), t[0]);
        let c01 = lerp(g(lo[0], j0, k1), g(hi[0], j0, k1), t[0]);
        let c11 = lerp(g(lo[0], j1, k1), g(hi[0], j1, k1), t[0]);
        let c0 = lerp(c00, c10, t[1]);
        let c1 = lerp(c01, c11, t[1]);
        let v = lerp(c0, c1, t[2]);
        // SAFETY: i + 8 <= full <= out.len().
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_blendv_ps(padv, v, inside)) };
        i += 8;
    }
    for k in full..len {
        out[k] = trilinear(data, n, pos[k], pad);
    }
}

/// Nearest neighbour at voxel coordinate `p` (rounding half up, as ITK).
#[inline(always)]
pub fn nearest(data: &[f32], n: [usize; 3], p: [f32; 3], pad: f32) -> f32 {
    if !inside(p, n) {
        return pad;
    }
    let idx: [usize; 3] =
        std::array::from_fn(|a| (floor_from_minus_one(p[a] + 0.5).max(0) as usize).min(n[a] - 1));
    data[idx[0] + n[0] * (idx[1] + n[1] * idx[2])]
}
