//! Test support: are two volumes the same picture of the same place?
//!
//! Used by the DICOM plugin's tests and the end-to-end tests to compare Mindscan's output with
//! dcm2niix's: the two may store the voxels in different axis orders and directions, so the
//! comparison goes through the affines (voxel index → world mm), not the raw arrays.

/// One volume as the comparison sees it.
pub struct Grid<'a> {
    /// `[ni, nj, nk, nt]`, i fastest (NIfTI order); `nt` is 1 for a 3D volume.
    pub dims: [usize; 4],
    /// Voxel index → world (mm).
    pub affine: [[f64; 4]; 4],
    /// The value (scaled, as a reader would show it) at a flat index `i + ni * (j + nj * (k + nk * t))`.
    pub value: &'a dyn Fn(usize) -> f64,
}

/// `dims` of up to four entries as `[ni, nj, nk, nt]` (missing ones are 1).
pub fn dims4(dims: &[usize]) -> [usize; 4] {
    let mut d = [1usize; 4];
    for (slot, &n) in d.iter_mut().zip(dims) {
        *slot = n;
    }
    d
}

fn inv3(a: &[[f64; 4]; 4]) -> [[f64; 3]; 3] {
    let m = |r: usize, c: usize| a[r][c];
    let det = m(0, 0) * (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1))
        - m(0, 1) * (m(1, 0) * m(2, 2) - m(1, 2) * m(2, 0))
        + m(0, 2) * (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0));
    assert!(det.abs() > 1e-12, "singular affine {a:?}");
    let mut r = [[0.0; 3]; 3];
    for (i, row) in r.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            let (i1, i2) = ((j + 1) % 3, (j + 2) % 3);
            let (j1, j2) = ((i + 1) % 3, (i + 2) % 3);
            *v = (m(i1, j1) * m(i2, j2) - m(i1, j2) * m(i2, j1)) / det;
        }
    }
    r
}

fn world(m: &[[f64; 4]; 4], p: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|r| m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3])
}

/// Asserts that `ours` and `reference` cover the same voxel grid (each of our corner voxel
/// centres lies on a reference voxel centre within `tol_mm`; the affines differ only by an axis
/// permutation / flip) and hold the same value at every world position (relative tolerance
/// 1e-6), and that `ours` is not mostly zero. `what` names the case in failure messages.
pub fn assert_same_world_grid(ours: &Grid, reference: &Grid, tol_mm: f64, what: &str) {
    let [ni, nj, nk, nt] = ours.dims;
    let rd = reference.dims;
    let (mut sa, mut sb) = ([ni, nj, nk], [rd[0], rd[1], rd[2]]);
    sa.sort();
    sb.sort();
    assert_eq!(
        sa, sb,
        "{what}: spatial dims differ (ours {:?}, reference {rd:?})",
        ours.dims
    );
    assert_eq!(nt, rd[3], "{what}: number of volumes differs");
    let (a, b) = (&ours.affine, &reference.affine);
    let bi = inv3(b);
    // B⁻¹A (linear part) must be a signed permutation.
    let mut lin = [[0.0; 3]; 3];
    for (i, row) in lin.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| bi[i][k] * a[k][j]).sum();
            let e = v.abs();
            assert!(
                e < 1e-4 || (e - 1.0).abs() < 1e-4,
                "{what}: affines not related by an axis permutation/flip\nours {a:?}\nreference {b:?}"
            );
        }
    }
    let to_ref = |p: [f64; 3]| -> [f64; 3] {
        let w = world(a, p);
        let d = [w[0] - b[0][3], w[1] - b[1][3], w[2] - b[2][3]];
        [0, 1, 2].map(|i| bi[i][0] * d[0] + bi[i][1] * d[1] + bi[i][2] * d[2])
    };
    for ci in [0, ni - 1] {
        for cj in [0, nj - 1] {
            for ck in [0, nk - 1] {
                let p = [ci as f64, cj as f64, ck as f64];
                let q = to_ref(p).map(f64::round);
                let (back, w) = (world(b, q), world(a, p));
                let dist = ((back[0] - w[0]).powi(2)
                    + (back[1] - w[1]).powi(2)
                    + (back[2] - w[2]).powi(2))
                .sqrt();
                assert!(
                    dist < tol_mm,
                    "{what}: corner {p:?} is {dist} mm off the reference grid"
                );
                for d in 0..3 {
                    assert!(
                        q[d] >= 0.0 && (q[d] as usize) < rd[d],
                        "{what}: corner {p:?} falls outside the reference volume"
                    );
                }
            }
        }
    }
    let o = to_ref([0.0; 3]).map(f64::round);
    let perm = lin.map(|row| row.map(|v| v.round() as i64));
    let (mut mismatches, mut nonzero) = (0usize, 0usize);
    for t in 0..nt {
        for k in 0..nk {
            for j in 0..nj {
                for i in 0..ni {
                    let s = [i as i64, j as i64, k as i64];
                    let q = [0, 1, 2].map(|d| {
                        (o[d] as i64 + perm[d][0] * s[0] + perm[d][1] * s[1] + perm[d][2] * s[2])
                            as usize
                    });
                    let ridx = q[0] + rd[0] * (q[1] + rd[1] * (q[2] + rd[2] * t));
                    let idx = i + ni * (j + nj * (k + nk * t));
                    let (x, y) = ((ours.value)(idx), (reference.value)(ridx));
                    if x != 0.0 {
                        nonzero += 1;
                    }
                    if (x - y).abs() > 1e-6 * y.abs().max(1.0) {
                        if mismatches < 5 {
                            eprintln!("{what}: ({i},{j},{k},{t}) ours {x}, reference {y} at {q:?}");
                        }
                        mismatches += 1;
                    }
                }
            }
        }
    }
    assert_eq!(
        mismatches, 0,
        "{what}: {mismatches} voxel(s) differ from the reference"
    );
    assert!(
        nonzero > ni * nj * nk * nt / 10,
        "{what}: volume is mostly zero"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3x4x5 volume and the same voxels stored with the first two axes swapped and the
    /// third flipped: the same picture; one changed voxel is not.
    #[test]
    fn same_picture_in_another_storage_order() {
        let (ni, nj, nk) = (3usize, 4usize, 5usize);
        let v: Vec<f64> = (0..ni * nj * nk).map(|x| x as f64 + 1.0).collect();
        let a = [
            [2.0, 0.0, 0.0, -10.0],
            [0.0, 3.0, 0.0, 5.0],
            [0.0, 0.0, 4.0, 1.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        // Stored as [j, i, k'] with k' = nk-1-k: world = A * (i, j, k).
        let mut w = vec![0.0; v.len()];
        for k in 0..nk {
            for j in 0..nj {
                for i in 0..ni {
                    w[j + nj * (i + ni * (nk - 1 - k))] = v[i + ni * (j + nj * k)];
                }
            }
        }
        let b = [
            [0.0, 2.0, 0.0, -10.0],
            [3.0, 0.0, 0.0, 5.0],
            [0.0, 0.0, -4.0, 1.0 + 4.0 * (nk - 1) as f64],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let ours = Grid {
            dims: [ni, nj, nk, 1],
            affine: a,
            value: &|x| v[x],
        };
        let reference = Grid {
            dims: [nj, ni, nk, 1],
            affine: b,
            value: &|x| w[x],
        };
        assert_same_world_grid(&ours, &reference, 0.01, "permuted");

        let mut bad = w.clone();
        bad[7] += 1.0;
        let reference = Grid {
            dims: [nj, ni, nk, 1],
            affine: b,
            value: &|x| bad[x],
        };
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_same_world_grid(&ours, &reference, 0.01, "one voxel changed")
        }));
        assert!(caught.is_err());
    }
}
