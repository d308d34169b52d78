//! Multi-head scaled dot-product self-attention, `softmax(q k^T * scale) v`, one task per image
//! and block of queries so that a block's scores stay in cache: a GEMM for the scores, the
//! softmax in place, a GEMM for the values, then one division per output instead of one per
//! score.

use std::cell::RefCell;

use rayon::prelude::*;

use super::gemm::{Init, Seg, matmul};
use super::simd;
use super::tensor::scratch;

/// Scores held per task (floats): a block of queries against all keys.
const SCORE_FLOATS: usize = 1 << 17;

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Row stride of transposed keys and of scores: `l` rounded up, plus 16 so that consecutive
/// rows do not map to the same cache sets when `l` is a power of two.
fn padded(l: usize) -> usize {
    l.next_multiple_of(16) + 16
}

/// Floats of the transposed-keys scratch that `attention` needs.
pub(crate) fn keys_len(n: usize, l: usize, c: usize) -> usize {
    n * c * padded(l)
}

/// `qkv` `[n][l][3 c]` (per token: all heads' queries, then keys, then values, each
/// `heads x head_dim`) -> `out` `[n][l][c]` (heads side by side), `c = heads * head_dim`.
/// `keys` (`keys_len` floats) receives each head's keys transposed, `[n][heads][head_dim][l]`.
pub(crate) fn attention(
    qkv: &[f32],
    out: &mut [f32],
    keys: &mut [f32],
    n: usize,
    l: usize,
    heads: usize,
    head_dim: usize,
) {
    let c = heads * head_dim;
    assert_eq!(qkv.len(), n * l * 3 * c);
    assert_eq!(out.len(), n * l * c);
    assert_eq!(keys.len(), keys_len(n, l, c));
    let ld = padded(l);
    keys.par_chunks_mut(head_dim * ld)
        .enumerate()
        .for_each(|(i, kt)| {
            let (img, head) = (i / heads, i % heads);
            let key = |j: usize| (img * l + j) * 3 * c + c + head * head_dim;
            // 16 tokens at a time: 16 contiguous writes per dimension, reads within 16 rows.
            for j0 in (0..l).step_by(16) {
                let j1 = (j0 + 16).min(l);
                for d in 0..head_dim {
                    let out = &mut kt[d * ld + j0..d * ld + j1];
                    for (jj, o) in out.iter_mut().enumerate() {
                        *o = qkv[key(j0 + jj) + d];
                    }
                }
            }
        });
    let keys = &*keys;
    let threads = rayon::current_num_threads();
    let mut block = (SCORE_FLOATS / ld).clamp(8, 256).min(l);
    while block > 8 && n * l.div_ceil(block) < 4 * threads {
        block /= 2;
    }
    let scale = (head_dim as f32).powf(-0.5);
    out.par_chunks_mut(block * c)
        .enumerate()
        .for_each(|(task, dst)| {
            // Blocks do not straddle images when `block` divides `l`; otherwise split per image.
            let mut token = task * block;
            let end = token + dst.len() / c;
            while token < end {
                let img = token / l;
                let rows = end.min((img + 1) * l) - token;
                let q0 = token - img * l;
                let d = &mut dst[(token - task * block) * c..(token - task * block + rows) * c];
                SCORES.with_borrow_mut(|scores| {
                    let scores = scratch(scores, rows * ld);
                    let mut sums = vec![0.0f32; rows];
                    let image = &qkv[img * l * 3 * c..(img + 1) * l * 3 * c];
                    for head in 0..heads {
                        let q = Seg {
                            a: image[q0 * 3 * c + head * head_dim..].as_ptr(),
                            a_rs: 3 * c,
                            k: head_dim,
                            b: keys[(img * heads + head) * head_dim * ld..].as_ptr(),
                            ldb: ld,
                        };
                        // SAFETY: queries q0..q0 + rows of this image and the head's transposed
                        // keys (head_dim rows of l at stride ld) are in bounds; `scores` holds
                        // rows x ld.
                        unsafe {
                            matmul(rows, l, &[q], scores.as_mut_ptr(), ld, Init::Zero, scale)
                        };
                        for (s, row) in sums.iter_mut().zip(scores.chunks_exact_mut(ld)) {
                            *s = simd::softmax_unnormalised(&mut row[..l]);
                        }
                        let pv = Seg {
                            a: scores.as_ptr(),
                            a_rs: ld,
                            k: l,
                            b: image[2 * c + head * head_dim..].as_ptr(),
                            ldb: 3 * c,
                        };
                        let o = d[head * head_dim..].as_mut_ptr();
                        // SAFETY: the scores are rows x l at stride ld; values 0..l of this head
                        // lie in `image`; the output rows x head_dim at stride c lie in `d`.
                        unsafe { matmul(rows, head_dim, &[pv], o, c, Init::Zero, 1.0) };
                        for (s, row) in sums.iter().zip(d.chunks_exact_mut(c)) {
                            simd::scale(&mut row[head * head_dim..(head + 1) * head_dim], 1.0 / s);
                        }
                    }
                });
                token += rows;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::layers::tensor::testing::{on_both_paths, rel_err, values};

    #[test]
    fn attention_matches_softmax_of_scaled_scores_times_values() {
        on_both_paths(|| {
            for (n, l, heads, hd) in [
                (2, 37, 3, 5),
                (3, 300, 2, 8),
                (1, 5, 1, 1),
                (2, 70, 2, 16),
                (1, 64, 1, 64),
            ] {
                let c = heads * hd;
                let qkv: Vec<f32> = values(n * l * 3 * c, 1).iter().map(|v| v * 3.0).collect();
                let mut got = vec![f32::NAN; n * l * c];
                let mut keys = vec![f32::NAN; keys_len(n, l, c)];
                attention(&qkv, &mut got, &mut keys, n, l, heads, hd);
                let mut want = vec![0.0f32; n * l * c];
                let at = |b: usize, t: usize, part: usize, h: usize, d: usize| {
                    qkv[(b * l + t) * 3 * c + part * c + h * hd + d] as f64
                };
                for b in 0..n {
                    for h in 0..heads {
                        for i in 0..l {
                            let s: Vec<f64> = (0..l)
                                .map(|j| {
                                    (0..hd)
                                        .map(|d| at(b, i, 0, h, d) * at(b, j, 1, h, d))
                                        .sum::<f64>()
                                        / (hd as f64).sqrt()
                                })
                                .collect();
                            let max = s.iter().cloned().fold(f64::MIN, f64::max);
                            let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
                            let total: f64 = e.iter().sum();
                            for d in 0..hd {
                                let v: f64 = (0..l).map(|j| e[j] * at(b, j, 2, h, d)).sum();
                                want[(b * l + i) * c + h * hd + d] = (v / total) as f32;
                            }
                        }
                    }
                }
                let err = rel_err(&got, &want);
                assert!(err < 2e-6, "{n} {l} {heads} {hd}: {err}");
            }
        });
    }
}
