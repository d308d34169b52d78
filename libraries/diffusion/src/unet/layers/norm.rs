//! GroupNorm (affine), optionally fused with SiLU, over an input given as one or more channel
//! blocks (the up path's `cat([h, skip])` is never built: the norm reads both parts and writes
//! the concatenation). Two passes: per-channel sums, then one write of the normalised values,
//! either into a padded activation (a convolution's input) or into dense `[n][h w][c]` tokens.

use rayon::prelude::*;

use super::simd;
use super::tensor::Act;
use crate::unet::weights::Weights;

pub(crate) struct GroupNorm {
    pub c: usize,
    groups: usize,
    eps: f64,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// Where the normalised values go.
pub(crate) enum NormOut<'a> {
    /// A padded activation with the inputs' grid and the sum of their channels.
    Padded(&'a mut Act),
    /// `[n][h * w][c]` tokens.
    Dense(&'a mut [f32]),
}

/// Per image and channel, `y = x * scale + shift`.
struct Affine {
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl GroupNorm {
    /// `weight` and `bias`, both `[c]`, under `w`.
    pub fn load(w: &Weights, c: usize, groups: usize, eps: f64) -> anyhow::Result<GroupNorm> {
        let gamma = w.get("weight", &[c])?;
        let beta = w.get("bias", &[c])?;
        Ok(GroupNorm::new(gamma, beta, groups, eps))
    }

    pub fn new(gamma: Vec<f32>, beta: Vec<f32>, groups: usize, eps: f64) -> GroupNorm {
        assert!(gamma.len() == beta.len() && gamma.len().is_multiple_of(groups));
        GroupNorm {
            c: gamma.len(),
            groups,
            eps,
            gamma,
            beta,
        }
    }

    /// Normalises the channel concatenation of `parts` (and applies SiLU if `silu`) into `out`.
    pub fn apply(&self, parts: &[&Act], out: NormOut, silu: bool) {
        let first = parts[0];
        assert!(
            parts.iter().all(|p| p.same_grid(first)),
            "GroupNorm parts differ in shape"
        );
        assert_eq!(
            parts.iter().map(|p| p.c).sum::<usize>(),
            self.c,
            "GroupNorm channels"
        );
        let affine = self.affine(parts);
        let (n, h, w, c) = (first.n, first.h, first.w, self.c);
        let write = |row: &mut [f32], img: usize, y: usize| {
            let mut offset = 0;
            for part in parts {
                let cs = part.c;
                let at = part.at(img, y, 1);
                let src = &part.data[at..at + w * cs];
                let range = img * c + offset..img * c + offset + cs;
                let (a, b) = (&affine.scale[range.clone()], &affine.shift[range]);
                let dst = &mut row[offset..];
                if silu {
                    norm_silu_pixels(src, a, b, dst, c);
                } else {
                    norm_pixels(src, a, b, dst, c);
                }
                offset += cs;
            }
        };
        match out {
            NormOut::Padded(act) => {
                assert!(act.same_grid(first) && act.c == c, "GroupNorm output shape");
                let pw = act.pw();
                {
                    let len = act.row_len();
                    act.data.par_chunks_mut(len)
                }
                .enumerate()
                .for_each(|(r, row)| {
                    let (img, y) = (r / (h + 2), r % (h + 2));
                    if y == 0 || y == h + 1 {
                        row.fill(0.0);
                        return;
                    }
                    row[..c].fill(0.0);
                    row[(pw - 1) * c..].fill(0.0);
                    write(&mut row[c..(pw - 1) * c], img, y);
                });
            }
            NormOut::Dense(tokens) => {
                assert_eq!(tokens.len(), n * h * w * c, "GroupNorm output shape");
                tokens
                    .par_chunks_mut(w * c)
                    .enumerate()
                    .for_each(|(r, row)| {
                        write(row, r / h, r % h + 1);
                    });
            }
        }
    }

    /// Group means and variances of each image, folded with gamma and beta into a per-channel
    /// scale and shift. Sums are taken about each channel's first pixel (so that a large mean
    /// does not cancel the variance away), in f32 along a row and f64 across rows.
    fn affine(&self, parts: &[&Act]) -> Affine {
        let first = parts[0];
        let (n, h, w, c) = (first.n, first.h, first.w, self.c);
        let bands = (4 * rayon::current_num_threads()).div_ceil(n).clamp(1, h);
        let band_rows = h.div_ceil(bands);
        let tasks: Vec<(usize, usize, usize)> = (0..parts.len())
            .flat_map(|p| {
                (0..n).flat_map(move |img| (0..h.div_ceil(band_rows)).map(move |b| (p, img, b)))
            })
            .collect();
        let sums: Vec<(Vec<f64>, Vec<f64>)> = tasks
            .par_iter()
            .map(|&(p, img, band)| {
                let part = parts[p];
                let cs = part.c;
                let shift = &part.data[part.at(img, 1, 1)..part.at(img, 1, 1) + cs];
                let (mut s1, mut s2) = (vec![0.0f64; cs], vec![0.0f64; cs]);
                let (mut r1, mut r2) = (vec![0.0f32; cs], vec![0.0f32; cs]);
                for y in band * band_rows + 1..=((band + 1) * band_rows).min(h) {
                    r1.fill(0.0);
                    r2.fill(0.0);
                    let at = part.at(img, y, 1);
                    simd::shifted_sums(&part.data[at..at + w * cs], shift, &mut r1, &mut r2);
                    for ch in 0..cs {
                        s1[ch] += r1[ch] as f64;
                        s2[ch] += r2[ch] as f64;
                    }
                }
                (s1, s2)
            })
            .collect();
        // Per image and channel of the concatenation: mean and sum of squared deviations.
        let count = (h * w) as f64;
        let mut mean = vec![0.0f64; n * c];
        let mut m2 = vec![0.0f64; n * c];
        let mut offset = 0;
        for (p, part) in parts.iter().enumerate() {
            for img in 0..n {
                let shift = &part.data[part.at(img, 1, 1)..part.at(img, 1, 1) + part.c];
                for ch in 0..part.c {
                    let (s1, s2) = tasks
                        .iter()
                        .zip(&sums)
                        .filter(|((tp, ti, _), _)| *tp == p && *ti == img)
                        .fold((0.0, 0.0), |(a, b), (_, (x, y))| (a + x[ch], b + y[ch]));
                    mean[img * c + offset + ch] = shift[ch] as f64 + s1 / count;
                    m2[img * c + offset + ch] = (s2 - s1 * s1 / count).max(0.0);
                }
            }
            offset += part.c;
        }
        let per_group = c / self.groups;
        let mut scale = vec![0.0f32; n * c];
        let mut shift = vec![0.0f32; n * c];
        for img in 0..n {
            for g in 0..self.groups {
                let chans = img * c + g * per_group..img * c + (g + 1) * per_group;
                let group_mean = mean[chans.clone()].iter().sum::<f64>() / per_group as f64;
                let group_m2: f64 = chans
                    .clone()
                    .map(|i| m2[i] + count * (mean[i] - group_mean).powi(2))
                    .sum();
                let var = group_m2 / (count * per_group as f64);
                let rstd = 1.0 / (var + self.eps).sqrt();
                for i in chans {
                    let a = self.gamma[i - img * c] as f64 * rstd;
                    scale[i] = a as f32;
                    shift[i] = (self.beta[i - img * c] as f64 - group_mean * a) as f32;
                }
            }
        }
        Affine { scale, shift }
    }
}

#[inline(always)]
fn pixels_body<const SILU: bool>(
    src: &[f32],
    scale: &[f32],
    shift: &[f32],
    dst: &mut [f32],
    stride: usize,
) {
    let cs = scale.len();
    for (x, px) in src.chunks_exact(cs).enumerate() {
        let out = &mut dst[x * stride..x * stride + cs];
        for (((d, &v), &a), &b) in out.iter_mut().zip(px).zip(scale).zip(shift) {
            *d = if SILU {
                simd::silu(v * a + b)
            } else {
                v * a + b
            };
        }
    }
}

#[inline(always)]
fn norm_silu_body(src: &[f32], scale: &[f32], shift: &[f32], dst: &mut [f32], stride: usize) {
    pixels_body::<true>(src, scale, shift, dst, stride)
}

#[inline(always)]
fn norm_body(src: &[f32], scale: &[f32], shift: &[f32], dst: &mut [f32], stride: usize) {
    pixels_body::<false>(src, scale, shift, dst, stride)
}

simd::dispatch! {
    /// For each pixel of `src` (`scale.len()` channels), `silu(x * scale + shift)` into `dst`
    /// at a pixel stride of `stride` floats.
    fn norm_silu_pixels(src: &[f32], scale: &[f32], shift: &[f32], dst: &mut [f32], stride: usize) => norm_silu_body
}

simd::dispatch! {
    /// As `norm_silu_pixels`, without the SiLU.
    fn norm_pixels(src: &[f32], scale: &[f32], shift: &[f32], dst: &mut [f32], stride: usize) => norm_body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::layers::tensor::testing::{from_act, on_both_paths, rel_err, to_act, values};

    /// GroupNorm of NCHW data in f64, then SiLU if asked.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        x: &[f32],
        n: usize,
        c: usize,
        hw: usize,
        groups: usize,
        gamma: &[f32],
        beta: &[f32],
        silu: bool,
    ) -> Vec<f32> {
        let gs = c / groups;
        let mut out = vec![0.0; x.len()];
        for b in 0..n {
            for g in 0..groups {
                let vals = &x[(b * c + g * gs) * hw..(b * c + (g + 1) * gs) * hw];
                let mean = vals.iter().map(|&v| v as f64).sum::<f64>() / vals.len() as f64;
                let var = vals.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>()
                    / vals.len() as f64;
                for ch in g * gs..(g + 1) * gs {
                    for i in 0..hw {
                        let idx = (b * c + ch) * hw + i;
                        let y = (x[idx] as f64 - mean) / (var + 1e-6).sqrt() * gamma[ch] as f64
                            + beta[ch] as f64;
                        out[idx] = if silu { y / (1.0 + (-y).exp()) } else { y } as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn groupnorm_silu_over_two_parts_matches_the_norm_of_their_concatenation() {
        on_both_paths(|| {
            // 3 + 6 channels in 3 groups of 3: the middle group straddles the two parts.
            let (n, c1, c2, h, w, groups) = (2, 3, 6, 5, 7, 3);
            let a: Vec<f32> = values(n * c1 * h * w, 1)
                .iter()
                .map(|v| v * 3.0 + 20.0)
                .collect();
            let b = values(n * c2 * h * w, 2);
            let gamma = values(c1 + c2, 3);
            let beta = values(c1 + c2, 4);
            let cat: Vec<f32> = (0..n)
                .flat_map(|i| {
                    a[i * c1 * h * w..(i + 1) * c1 * h * w]
                        .iter()
                        .chain(&b[i * c2 * h * w..(i + 1) * c2 * h * w])
                })
                .copied()
                .collect();
            let norm = GroupNorm::new(gamma.clone(), beta.clone(), groups, 1e-6);
            let (pa, pb) = (to_act(&a, n, c1, h, w), to_act(&b, n, c2, h, w));
            for silu in [true, false] {
                let want = naive(&cat, n, c1 + c2, h * w, groups, &gamma, &beta, silu);
                let mut out = Act {
                    data: vec![f32::NAN; pa.pixels() * (c1 + c2)],
                    n,
                    h,
                    w,
                    c: c1 + c2,
                };
                norm.apply(&[&pa, &pb], NormOut::Padded(&mut out), silu);
                let err = rel_err(&from_act(&out), &want);
                assert!(err < 2e-6, "silu {silu}: {err}");
            }
        });
    }

    #[test]
    fn groupnorm_writes_dense_tokens_in_pixel_order() {
        let (n, c, h, w, groups) = (2, 6, 3, 4, 2);
        let x = values(n * c * h * w, 5);
        let gamma = values(c, 6);
        let beta = values(c, 7);
        let want = naive(&x, n, c, h * w, groups, &gamma, &beta, false);
        let mut tokens = vec![f32::NAN; n * h * w * c];
        GroupNorm::new(gamma, beta, groups, 1e-6).apply(
            &[&to_act(&x, n, c, h, w)],
            NormOut::Dense(&mut tokens),
            false,
        );
        let got: Vec<f32> = (0..want.len())
            .map(|i| {
                let (b, ch, p) = (i / (c * h * w), (i / (h * w)) % c, i % (h * w));
                tokens[(b * h * w + p) * c + ch]
            })
            .collect();
        assert!(rel_err(&got, &want) < 2e-6);
    }
}
