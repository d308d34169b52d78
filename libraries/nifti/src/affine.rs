//! Affine helpers following nibabel's conventions (re-implemented from the formulas).

/// Quaternion representation of a qform, as stored in a NIfTI header.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QformParams {
    /// `quatern_b`, `quatern_c`, `quatern_d`.
    pub quatern: [f64; 3],
    /// `qoffset_x`, `qoffset_y`, `qoffset_z`.
    pub qoffset: [f64; 3],
    /// `pixdim[1..=3]`.
    pub zooms: [f64; 3],
    /// `pixdim[0]`.
    pub qfac: f64,
}

pub(crate) const IDENTITY: [[f64; 4]; 4] = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
];

/// nibabel's header fix for spatial voxel sizes: 0 -> 1, negative -> absolute value.
pub(crate) fn fixed_zoom(z: f64) -> f64 {
    if z == 0.0 { 1.0 } else { z.abs() }
}

/// The qform affine from quaternion fields, as nibabel's `get_qform` computes it.
/// `version` (1 or 2) selects the precision used to decide that the quaternion's
/// `a` component is zero (3 float32 eps for NIfTI-1, 3 float64 eps for NIfTI-2).
pub fn qform_to_affine(q: &QformParams, version: u8) -> [[f64; 4]; 4] {
    let [b, c, d] = q.quatern;
    let thresh = if version >= 2 {
        3.0 * f64::EPSILON
    } else {
        3.0 * f32::EPSILON as f64
    };
    let w2 = 1.0 - (b * b + c * c + d * d);
    // nibabel raises for a clearly negative w2; we take a = 0 (the rotation is then
    // built from the normalised (b, c, d), as the quaternion is normalised below).
    let a = if w2.abs() < thresh || w2 < 0.0 {
        0.0
    } else {
        w2.sqrt()
    };
    let r = quat_to_matrix([a, b, c, d]);
    let qfac = if q.qfac == -1.0 { -1.0 } else { 1.0 };
    let z = [
        fixed_zoom(q.zooms[0]),
        fixed_zoom(q.zooms[1]),
        fixed_zoom(q.zooms[2]) * qfac,
    ];
    let mut out = IDENTITY;
    for i in 0..3 {
        for j in 0..3 {
            out[i][j] = r[i][j] * z[j];
        }
        out[i][3] = q.qoffset[i];
    }
    out
}

fn quat_to_matrix([w, x, y, z]: [f64; 4]) -> [[f64; 3]; 3] {
    let n = w * w + x * x + y * y + z * z;
    if n < f64::EPSILON {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let s = 2.0 / n;
    let (xs, ys, zs) = (x * s, y * s, z * s);
    let (wx, wy, wz) = (w * xs, w * ys, w * zs);
    let (xx, xy, xz) = (x * xs, x * ys, x * zs);
    let (yy, yz, zz) = (y * ys, y * zs, z * zs);
    [
        [1.0 - (yy + zz), xy - wz, xz + wy],
        [xy + wz, 1.0 - (xx + zz), yz - wx],
        [xz - wy, yz + wx, 1.0 - (xx + yy)],
    ]
}

/// Norms of the first three columns of the affine's 3x3 part (the voxel sizes).
pub(crate) fn column_norms(a: &[[f64; 4]; 4]) -> [f64; 3] {
    let mut z = [0.0; 3];
    for (j, zj) in z.iter_mut().enumerate() {
        *zj = (0..3).map(|i| a[i][j] * a[i][j]).sum::<f64>().sqrt();
    }
    z
}

fn det3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// Inverse transpose of a 3x3 matrix (None when singular).
fn inv_transpose(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = det3(m);
    if det.abs() < 1e-300 || !det.is_finite() {
        return None;
    }
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            // cofactor C_ij; inverse = C^T / det, so inverse transpose = C / det
            let (r0, r1) = ((i + 1) % 3, (i + 2) % 3);
            let (c0, c1) = ((j + 1) % 3, (j + 2) % 3);
            *v = (m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]) / det;
        }
    }
    Some(out)
}

/// Quaternion parameters for an affine, like nibabel's `set_qform`: voxel sizes are
/// the column norms, qfac is -1 when the rotation part has a negative determinant,
/// and shears are stripped by taking the nearest orthogonal matrix (polar
/// decomposition). The second value is `true` when the affine had shears (so the
/// qform cannot reproduce it exactly).
pub fn qform_from_affine(a: &[[f64; 4]; 4]) -> (QformParams, bool) {
    let zooms = column_norms(a);
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = if zooms[j] > 0.0 {
                a[i][j] / zooms[j]
            } else if i == j {
                1.0
            } else {
                0.0
            };
        }
    }
    let qfac = if det3(&r) > 0.0 { 1.0 } else { -1.0 };
    if qfac < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
    }
    // Polar decomposition by Newton iteration: X <- (X + X^-T) / 2.
    let orig = r;
    let mut x = r;
    for _ in 0..100 {
        let Some(it) = inv_transpose(&x) else { break };
        let mut next = [[0.0; 3]; 3];
        let mut diff: f64 = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                next[i][j] = 0.5 * (x[i][j] + it[i][j]);
                diff = diff.max((next[i][j] - x[i][j]).abs());
            }
        }
        x = next;
        if diff < 1e-15 {
            break;
        }
    }
    let sheared = (0..3).any(|i| (0..3).any(|j| (x[i][j] - orig[i][j]).abs() > 1e-6));
    let [w, qx, qy, qz] = matrix_to_quat(&x);
    let (qx, qy, qz) = if w < 0.0 {
        (-qx, -qy, -qz)
    } else {
        (qx, qy, qz)
    };
    (
        QformParams {
            quatern: [qx, qy, qz],
            qoffset: [a[0][3], a[1][3], a[2][3]],
            zooms,
            qfac,
        },
        sheared,
    )
}

/// Unit quaternion `[w, x, y, z]` of a rotation matrix (Shepperd's method).
fn matrix_to_quat(m: &[[f64; 3]; 3]) -> [f64; 4] {
    let t = m[0][0] + m[1][1] + m[2][2];
    let q = if t > 0.0 {
        let s = (t + 1.0).sqrt() * 2.0;
        [
            0.25 * s,
            (m[2][1] - m[1][2]) / s,
            (m[0][2] - m[2][0]) / s,
            (m[1][0] - m[0][1]) / s,
        ]
    } else if m[0][0] > m[1][1] && m[0][0] > m[2][2] {
        let s = (1.0 + m[0][0] - m[1][1] - m[2][2]).sqrt() * 2.0;
        [
            (m[2][1] - m[1][2]) / s,
            0.25 * s,
            (m[0][1] + m[1][0]) / s,
            (m[0][2] + m[2][0]) / s,
        ]
    } else if m[1][1] > m[2][2] {
        let s = (1.0 + m[1][1] - m[0][0] - m[2][2]).sqrt() * 2.0;
        [
            (m[0][2] - m[2][0]) / s,
            (m[0][1] + m[1][0]) / s,
            0.25 * s,
            (m[1][2] + m[2][1]) / s,
        ]
    } else {
        let s = (1.0 + m[2][2] - m[0][0] - m[1][1]).sqrt() * 2.0;
        [
            (m[1][0] - m[0][1]) / s,
            (m[0][2] + m[2][0]) / s,
            (m[1][2] + m[2][1]) / s,
            0.25 * s,
        ]
    };
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    if n > 0.0 && n.is_finite() {
        q.map(|v| v / n)
    } else {
        [1.0, 0.0, 0.0, 0.0]
    }
}

/// nibabel's fallback affine when neither sform nor qform is set
/// (`shape_zoom_affine` with x flipped): voxel sizes from `pixdim` on the diagonal,
/// x negated, and the centre of the volume at world (0, 0, 0).
/// Only the first three dims count; missing ones are 1.
pub fn fallback_affine(dims: &[usize], pixdim: &[f64]) -> [[f64; 4]; 4] {
    let mut out = IDENTITY;
    for (i, row) in out.iter_mut().take(3).enumerate() {
        let n = dims.get(i).copied().unwrap_or(1) as f64;
        let z = if i < dims.len() {
            fixed_zoom(pixdim.get(i).copied().unwrap_or(1.0))
        } else {
            1.0
        };
        let z = if i == 0 { -z } else { z };
        row[i] = z;
        row[3] = -(n - 1.0) / 2.0 * z;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4], tol: f64) -> bool {
        (0..4).all(|i| (0..4).all(|j| (a[i][j] - b[i][j]).abs() <= tol))
    }

    #[test]
    fn quaternion_round_trip_of_rotations_and_flips() {
        let c = (0.3f64).cos();
        let s = (0.3f64).sin();
        let cases = [
            [
                [-2.0, 0.0, 0.0, 90.0],
                [0.0, 2.0, 0.0, -126.0],
                [0.0, 0.0, 2.2, -72.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
            [
                [c * 1.5, -s * 2.0, 0.0, 1.0],
                [s * 1.5, c * 2.0, 0.0, 2.0],
                [0.0, 0.0, -3.0, 3.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
            // 180 degree rotation about y (w = 0)
            [
                [-1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, -1.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
            // axes permuted (sagittal)
            [
                [0.0, 0.0, 1.2, 0.0],
                [-1.0, 0.0, 0.0, 0.0],
                [0.0, -1.1, 0.0, 5.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        ];
        for a in &cases {
            let (q, sheared) = qform_from_affine(a);
            assert!(!sheared);
            for version in [1, 2] {
                let back = qform_to_affine(&q, version);
                assert!(close(&back, a, 1e-9), "{a:?} -> {q:?} -> {back:?}");
            }
        }
    }

    #[test]
    fn shear_is_detected_and_stripped() {
        let a = [
            [1.0, 0.5, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let (q, sheared) = qform_from_affine(&a);
        assert!(sheared);
        let back = qform_to_affine(&q, 1);
        // the result is a rotation times zooms: columns orthogonal
        let dot: f64 = (0..3).map(|i| back[i][0] * back[i][1]).sum();
        assert!(dot.abs() < 1e-9);
    }

    #[test]
    fn fallback_matches_nibabel_doc_example() {
        // nibabel: shape (3, 5, 7), zooms (3, 2, 1) -> [[-3,0,0,3],[0,2,0,-4],[0,0,1,-3]]
        let a = fallback_affine(&[3, 5, 7], &[3.0, 2.0, 1.0]);
        let want = [
            [-3.0, 0.0, 0.0, 3.0],
            [0.0, 2.0, 0.0, -4.0],
            [0.0, 0.0, 1.0, -3.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(a, want);
    }
}
