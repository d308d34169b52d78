//! FFTs along one axis of a volume, two real lines packed in one complex line.

use std::sync::Arc;

use rayon::prelude::*;
use rustfft::Fft;

use super::*;

// ------------------------------------------------------------------------------------------
// Lines

/// Lines per batch: pairs of rows (axis 0) or of columns (axes 1, 2) transformed together.
pub(super) const BATCH: usize = 32;

/// Runs `op` on every line of `data` along `axis`, two real lines at a time packed as the real
/// and imaginary parts of one complex line: `bufs[0]` holds `pairs` such lines (`n` each) of
/// `data`, `bufs[1 + e]` the same lines of `extra[e]` (same dims). `op` leaves the packed result
/// in `bufs[0]`, whose real parts go back to the first line of each pair and imaginary parts to
/// the second. `scratch_len`: the FFT scratch `op` needs.
pub(super) fn map_line_pairs<F>(
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
pub(super) fn fft_axis(s: &mut [C32], dims: [usize; 3], axis: usize, fft: &Arc<dyn Fft<f32>>) {
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
