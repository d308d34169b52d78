//! 3x3 (stride 1 and 2) and 1x1 convolutions on padded NHWC activations, as GEMMs without an
//! im2col copy. `convolve` hands even-sized 3x3 convolutions to `winograd` and does the rest
//! here.
//!
//! Stride 1: an output pixel `p` (stored coordinates, counted over the whole batch) needs, for
//! kernel row `dy`, the three pixels `p + (dy - 1) * pw - 1 ..= p + (dy - 1) * pw + 1`, which
//! are `3 * cin` adjacent floats. So for each `dy` the input is a matrix with row stride `cin`
//! and `3 * cin` columns (rows overlap), times that kernel row's `[3 * cin, cout]` weights. The
//! border pixels of the output come out as junk and are zeroed; the products start from the
//! bias (plus a per-image vector and a residual, where the block has them). The batch is cut into runs of pixels, one task each, so a run's output
//! stays in cache across its GEMMs.

use rayon::prelude::*;

use super::gemm::{Init, Seg, matmul};
use super::tensor::Act;
use super::winograd;
use crate::unet::weights::Weights;

/// A 3x3 convolution, weights packed per kernel row as `[3][3 * cin][cout]`
/// (`[dy][dx * cin + ci][co]`).
pub(crate) struct Conv3x3 {
    pub cin: usize,
    pub cout: usize,
    packed: Vec<f32>,
    /// The kernels transformed for `winograd`, `[16][cin][cout]`.
    winograd: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Conv3x3 {
    /// `weight` `[cout, cin, 3, 3]` and `bias` `[cout]` under `w`.
    pub fn load(w: &Weights, cin: usize, cout: usize) -> anyhow::Result<Conv3x3> {
        let weight = w.get("weight", &[cout, cin, 3, 3])?;
        let bias = w.get("bias", &[cout])?;
        Ok(Conv3x3::from_torch(&weight, bias, cin, cout))
    }

    /// From PyTorch's `[cout, cin, 3, 3]` layout.
    pub fn from_torch(weight: &[f32], bias: Vec<f32>, cin: usize, cout: usize) -> Conv3x3 {
        assert_eq!(weight.len(), cout * cin * 9);
        let mut packed = vec![0.0; 9 * cin * cout];
        for co in 0..cout {
            for ci in 0..cin {
                for dy in 0..3 {
                    for dx in 0..3 {
                        packed[(dy * 3 * cin + dx * cin + ci) * cout + co] =
                            weight[((co * cin + ci) * 3 + dy) * 3 + dx];
                    }
                }
            }
        }
        Conv3x3 {
            cin,
            cout,
            packed,
            winograd: winograd::transform_kernels(weight, cin, cout),
            bias,
        }
    }

    fn row(&self, dy: usize) -> &[f32] {
        let len = 3 * self.cin * self.cout;
        &self.packed[dy * len..(dy + 1) * len]
    }
}

/// A 1x1 convolution, weights `[cin][cout]`.
pub(crate) struct Conv1x1 {
    pub cin: usize,
    pub cout: usize,
    packed: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Conv1x1 {
    /// `weight` `[cout, cin, 1, 1]` and `bias` `[cout]` under `w`.
    pub fn load(w: &Weights, cin: usize, cout: usize) -> anyhow::Result<Conv1x1> {
        let weight = w.get("weight", &[cout, cin, 1, 1])?;
        let bias = w.get("bias", &[cout])?;
        Ok(Conv1x1::from_torch(&weight, bias, cin, cout))
    }

    /// From PyTorch's `[cout, cin(, 1, 1)]` layout.
    pub fn from_torch(weight: &[f32], bias: Vec<f32>, cin: usize, cout: usize) -> Conv1x1 {
        assert_eq!(weight.len(), cout * cin);
        let mut packed = vec![0.0; cin * cout];
        for co in 0..cout {
            for ci in 0..cin {
                packed[ci * cout + co] = weight[co * cin + ci];
            }
        }
        Conv1x1 {
            cin,
            cout,
            packed,
            bias,
        }
    }

    /// The weights of input channels `from..from + len`, for an input given in parts.
    pub fn input_rows(&self, from: usize, len: usize) -> &[f32] {
        assert!(from + len <= self.cin, "1x1 convolution input channels");
        &self.packed[from * self.cout..(from + len) * self.cout]
    }
}

/// One product accumulated into a convolution's output.
pub(crate) enum Term<'a> {
    /// A 3x3 convolution (stride 1, zero padding 1) of an input.
    Conv3(&'a Conv3x3, &'a Act),
    /// A 1x1 convolution of an input by `[src.c][cout]` weights.
    Conv1(&'a [f32], &'a Act),
}

/// What the output starts from before the products are added.
pub(crate) struct Start<'a> {
    /// Per channel (the sum of the terms' biases).
    pub bias: &'a [f32],
    /// Per image and channel, `[n][cout]` (a time embedding).
    pub per_image: Option<&'a [f32]>,
    /// An activation of the output's shape (a residual).
    pub residual: Option<&'a Act>,
}

impl<'a> Start<'a> {
    pub fn bias(bias: &'a [f32]) -> Start<'a> {
        Start {
            bias,
            per_image: None,
            residual: None,
        }
    }
}

/// Pixels per task: enough rows for the GEMMs to run at speed, small enough that a task's
/// output and inputs stay in L2.
const RUN_PIXELS: usize = 256;

/// `out = start + sum of terms`, all at `out`'s resolution: by Winograd F(2x2, 3x3) where the
/// terms are one 3x3 convolution and 1x1 ones, the size is even and there are enough channels
/// for the 16 products to pay; else directly.
pub(crate) fn convolve(out: &mut Act, start: Start, terms: &[Term]) {
    if let [Term::Conv3(conv, src), rest @ ..] = terms {
        let skips: Option<Vec<(&[f32], &Act)>> = rest
            .iter()
            .map(|t| match t {
                Term::Conv1(w, x) => Some((*w, *x)),
                Term::Conv3(..) => None,
            })
            .collect();
        let fits =
            out.h.is_multiple_of(2) && out.w.is_multiple_of(2) && conv.cin >= 8 && conv.cout >= 8;
        if let (Some(skips), true) = (skips, fits) {
            check_terms(out, &start, terms);
            let base = start_per_image(out, &start);
            winograd::convolve_winograd(out, &start, &base, &conv.winograd, src, &skips);
            return;
        }
    }
    convolve_direct(out, start, terms);
}

/// `convolve` without Winograd.
pub(crate) fn convolve_direct(out: &mut Act, start: Start, terms: &[Term]) {
    let tasks = 8 * rayon::current_num_threads();
    let run = out.pixels().div_ceil(tasks).clamp(32, RUN_PIXELS);
    convolve_in_runs(out, start, terms, run);
}

/// Asserts that the terms and the start fit the output.
fn check_terms(out: &Act, start: &Start, terms: &[Term]) {
    let c = out.c;
    for term in terms {
        let (src, cin) = match term {
            Term::Conv3(conv, src) => {
                assert_eq!(
                    (conv.cin, conv.cout),
                    (src.c, c),
                    "3x3 convolution channels"
                );
                (*src, conv.cin)
            }
            Term::Conv1(weights, src) => {
                assert_eq!(weights.len(), src.c * c, "1x1 convolution channels");
                (*src, src.c)
            }
        };
        assert!(src.same_grid(out) && cin > 0, "convolution input shape");
    }
    assert_eq!(start.bias.len(), c);
    if let Some(t) = start.per_image {
        assert_eq!(t.len(), out.n * c, "per-image start shape");
    }
    if let Some(res) = start.residual {
        assert!(res.same_grid(out) && res.c == c, "residual shape");
    }
}

/// Bias plus the per-image vector, `[n][c]`.
fn start_per_image(out: &Act, start: &Start) -> Vec<f32> {
    let c = out.c;
    (0..out.n)
        .flat_map(|img| {
            (0..c).map(move |ch| start.bias[ch] + start.per_image.map_or(0.0, |t| t[img * c + ch]))
        })
        .collect()
}

/// The direct convolution with `run` pixels per task.
pub(crate) fn convolve_in_runs(out: &mut Act, start: Start, terms: &[Term], run: usize) {
    let (c, pw, h) = (out.c, out.pw(), out.h);
    check_terms(out, &start, terms);
    let base = start_per_image(out, &start);
    let image_pixels = out.image_pixels();
    out.data
        .par_chunks_mut(run * c)
        .enumerate()
        .for_each(|(task, dst)| {
            let p0 = task * run;
            let p1 = p0 + dst.len() / c;
            // One product per image (its own bias), over the rows between its top and bottom
            // border rows; what is left of the chunk is border and zeroed below.
            let mut q = p0;
            while q < p1 {
                let img = q / image_pixels;
                let next = (img + 1) * image_pixels;
                let (r0, r1) = (q.max(next - image_pixels + pw + 1), p1.min(next - pw - 1));
                q = next;
                if r0 >= r1 {
                    continue;
                }
                let mut segs = Vec::with_capacity(3 * terms.len());
                for term in terms {
                    match term {
                        Term::Conv3(conv, src) => {
                            let cin = conv.cin;
                            for dy in 0..3 {
                                let first = (r0 + dy * pw - pw - 1) * cin;
                                segs.push(Seg {
                                    a: src.data[first..].as_ptr(),
                                    a_rs: cin,
                                    k: 3 * cin,
                                    b: conv.row(dy).as_ptr(),
                                    ldb: c,
                                });
                            }
                        }
                        Term::Conv1(weights, src) => segs.push(Seg {
                            a: src.data[r0 * src.c..].as_ptr(),
                            a_rs: src.c,
                            k: src.c,
                            b: weights.as_ptr(),
                            ldb: c,
                        }),
                    }
                }
                let init = Init::Bias {
                    bias: base[img * c..].as_ptr(),
                    residual: start.residual.map(|res| (res.data[r0 * c..].as_ptr(), c)),
                };
                let d = dst[(r0 - p0) * c..].as_mut_ptr();
                // SAFETY: rows r0..r1 lie between the image's first and last interior rows, so
                // a 3x3 term reads pixels r0 - pw - 1 ..= r1 + pw of its image; 1x1 terms and
                // the residual read pixels r0..r1; the weights are [3 cin][c] and [cin][c]; the
                // bias has c values; dst rows r0..r1 lie in this task's chunk.
                unsafe { matmul(r1 - r0, c, &segs, d, c, init, 1.0) };
            }
            zero_border_pixels(dst, p0, h, pw, c);
        });
}

/// Zeroes the border pixels among the stored pixels `p0..` held in `dst`.
fn zero_border_pixels(dst: &mut [f32], p0: usize, h: usize, pw: usize, c: usize) {
    let p1 = p0 + dst.len() / c;
    let mut row = p0 / pw;
    while row * pw < p1 {
        let (start, end) = ((row * pw).max(p0), ((row + 1) * pw).min(p1));
        let y = row % (h + 2);
        let local = |p: usize| (p - p0) * c;
        if y == 0 || y == h + 1 {
            dst[local(start)..local(end)].fill(0.0);
        } else {
            for p in [row * pw, row * pw + pw - 1] {
                if (start..end).contains(&p) {
                    dst[local(p)..local(p + 1)].fill(0.0);
                }
            }
        }
        row += 1;
    }
}

/// A 3x3 convolution with stride 2 and zero padding 1: `out` is half of `src` each way.
pub(crate) fn conv3x3_stride2(conv: &Conv3x3, src: &Act, out: &mut Act) {
    assert_eq!(
        (conv.cin, conv.cout),
        (src.c, out.c),
        "stride-2 convolution channels"
    );
    assert_eq!(
        (out.n, out.h, out.w),
        (src.n, src.h.div_ceil(2), src.w.div_ceil(2))
    );
    let (c, cin, ho, wo) = (out.c, conv.cin, out.h, out.w);
    let out_pw = out.pw();
    {
        let len = out.row_len();
        out.data.par_chunks_mut(len)
    }
    .enumerate()
    .for_each(|(r, row)| {
        let (img, y) = (r / (ho + 2), r % (ho + 2));
        if y == 0 || y == ho + 1 {
            row.fill(0.0);
            return;
        }
        row[..c].fill(0.0);
        row[(out_pw - 1) * c..].fill(0.0);
        let interior = &mut row[c..(wo + 1) * c];
        // Output (y - 1, x) reads stored input pixels (2 (y - 1) + dy, 2 x + dx): rows up to
        // 2 ho <= h + 1 and columns up to 2 wo <= w + 1, inside the stored image.
        let segs: Vec<Seg> = (0..3)
            .map(|dy| Seg {
                a: src.data[src.at(img, 2 * (y - 1) + dy, 0)..].as_ptr(),
                a_rs: 2 * cin,
                k: 3 * cin,
                b: conv.row(dy).as_ptr(),
                ldb: c,
            })
            .collect();
        // SAFETY: see above; the weights are [3 cin][c]; dst is this task's row.
        let init = Init::Bias {
            bias: conv.bias.as_ptr(),
            residual: None,
        };
        unsafe { matmul(wo, c, &segs, interior.as_mut_ptr(), c, init, 1.0) };
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::layers::tensor::testing::{
        from_act, naive_conv, on_both_paths, rel_err, to_act, values,
    };

    fn blank(n: usize, h: usize, w: usize, c: usize) -> Act {
        Act {
            data: vec![f32::NAN; n * (h + 2) * (w + 2) * c],
            n,
            h,
            w,
            c,
        }
    }

    #[test]
    fn conv3x3_matches_direct_convolution_for_any_run_length() {
        on_both_paths(|| {
            let (n, cin, cout, h, w) = (3, 5, 7, 5, 9);
            let input = values(n * cin * h * w, 1);
            let weight = values(cout * cin * 9, 2);
            let bias = values(cout, 3);
            let (want, _, _) = naive_conv(&input, &weight, &bias, n, cin, cout, h, w, 3, 1);
            let conv = Conv3x3::from_torch(&weight, bias.clone(), cin, cout);
            let src = to_act(&input, n, cin, h, w);
            for run in [1, 7, 11, 64, 1000] {
                let mut out = blank(n, h, w, cout);
                convolve_in_runs(
                    &mut out,
                    Start::bias(&conv.bias),
                    &[Term::Conv3(&conv, &src)],
                    run,
                );
                let err = rel_err(&from_act(&out), &want);
                assert!(err < 1e-6, "run {run}: {err}");
            }
        });
    }

    #[test]
    fn a_conv_adds_onto_its_residual_time_vector_and_1x1_terms() {
        on_both_paths(|| {
            let (n, c1, c2, cout, h, w) = (2, 3, 5, 6, 4, 7);
            let a = values(n * c1 * h * w, 4);
            let b = values(n * c2 * h * w, 5);
            let res = values(n * cout * h * w, 6);
            let per_image = values(n * cout, 7);
            let w3 = values(cout * c1 * 9, 8);
            let w1 = values(cout * (c1 + c2), 9);
            let zero = vec![0.0; cout];
            let bias = values(cout, 10);
            let conv = Conv3x3::from_torch(&w3, zero.clone(), c1, cout);
            let skip = Conv1x1::from_torch(&w1, zero, c1 + c2, cout);
            let (src_a, src_b, src_r) = (
                to_act(&a, n, c1, h, w),
                to_act(&b, n, c2, h, w),
                to_act(&res, n, cout, h, w),
            );
            let mut out = blank(n, h, w, cout);
            let start = Start {
                bias: &bias,
                per_image: Some(&per_image),
                residual: Some(&src_r),
            };
            let terms = [
                Term::Conv3(&conv, &src_a),
                Term::Conv1(skip.input_rows(0, c1), &src_a),
                Term::Conv1(skip.input_rows(c1, c2), &src_b),
            ];
            convolve_in_runs(&mut out, start, &terms, 13);
            let got = from_act(&out);
            let (conv_part, _, _) = naive_conv(&a, &w3, &bias, n, c1, cout, h, w, 3, 1);
            let cat: Vec<f32> = (0..n)
                .flat_map(|i| {
                    a[i * c1 * h * w..(i + 1) * c1 * h * w]
                        .iter()
                        .chain(&b[i * c2 * h * w..(i + 1) * c2 * h * w])
                })
                .copied()
                .collect();
            let (skip_part, _, _) =
                naive_conv(&cat, &w1, &vec![0.0; cout], n, c1 + c2, cout, h, w, 1, 1);
            let want: Vec<f32> = (0..got.len())
                .map(|i| {
                    let (img, ch) = (i / (cout * h * w), (i / (h * w)) % cout);
                    conv_part[i] + skip_part[i] + res[i] + per_image[img * cout + ch]
                })
                .collect();
            assert!(rel_err(&got, &want) < 1e-6);
        });
    }

    #[test]
    fn stride2_conv_matches_direct_convolution_on_even_and_odd_sizes() {
        on_both_paths(|| {
            for (h, w) in [(6, 10), (5, 7), (4, 3)] {
                let (n, cin, cout) = (2, 3, 5);
                let input = values(n * cin * h * w, 11);
                let weight = values(cout * cin * 9, 12);
                let bias = values(cout, 13);
                let (want, ho, wo) = naive_conv(&input, &weight, &bias, n, cin, cout, h, w, 3, 2);
                let conv = Conv3x3::from_torch(&weight, bias, cin, cout);
                let mut out = blank(n, ho, wo, cout);
                conv3x3_stride2(&conv, &to_act(&input, n, cin, h, w), &mut out);
                let err = rel_err(&from_act(&out), &want);
                assert!(err < 1e-6, "{h}x{w}: {err}");
            }
        });
    }
}
