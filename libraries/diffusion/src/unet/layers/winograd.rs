//! 3x3 convolutions (stride 1, zero padding 1) by Winograd's minimal filtering F(2x2, 3x3):
//! each 2x2 block of outputs from a 4x4 block of inputs with 16 multiplications per channel
//! pair instead of 36 (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
//!
//! With `d` a 4x4 input tile, `g` the 3x3 kernel and
//! `B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]`, `G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]`,
//! `A^T = [1 1 1 0; 0 1 -1 -1]`, the outputs are `A^T [(G g G^T) * (B^T d B)] A` (element-wise
//! product in the middle). Summed over input channels, the middle is 16 matrix products
//! `[tiles x cin] x [cin x cout]`, one per tile position; the kernels `U = G g G^T` are
//! transformed once at load. The transforms only add and subtract, so the result stays within
//! a few ulp of the direct convolution.
//!
//! Work is cut into bands of tile rows of one image, one task each: the band's transformed
//! inputs and products stay in L2, and each task writes whole output rows.

use std::cell::RefCell;

use rayon::prelude::*;

use super::conv::Start;
use super::gemm::{Init, Seg, matmul};
use super::simd;
use super::tensor::{Act, scratch};

/// `U = G g G^T` for every channel pair, `[16][cin][cout]` (tile position `4 i + j` first).
pub(crate) fn transform_kernels(weight: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let mut u = vec![0.0f32; 16 * cin * cout];
    for co in 0..cout {
        for ci in 0..cin {
            let g = |y: usize, x: usize| weight[((co * cin + ci) * 3 + y) * 3 + x] as f64;
            for i in 0..4 {
                for j in 0..4 {
                    let mut v = 0.0;
                    for (y, gy) in G[i].iter().enumerate() {
                        for (x, gx) in G[j].iter().enumerate() {
                            v += gy * g(y, x) * gx;
                        }
                    }
                    u[((4 * i + j) * cin + ci) * cout + co] = v as f32;
                }
            }
        }
    }
    u
}

/// Tiles per task, about: enough rows for the products, few enough that the transformed
/// tiles (16 x tiles x channels, in and out) stay in L2.
const TARGET_TILES: usize = 64;

thread_local! {
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// One task: rows `ty0..ty1` of 2x2 tiles of image `img`, writing stored rows
/// `2 ty0 + 1 .. 2 ty1 + 1` (`rows`).
struct Band<'a> {
    img: usize,
    ty0: usize,
    ty1: usize,
    rows: &'a mut [f32],
}

/// `out = start + conv(src) + sum of 1x1 terms`, `out` and `src` of even height and width.
/// `kernels` from `transform_kernels`; `skips` are `([cin][cout] weights, input)` pairs.
pub(crate) fn convolve_winograd(
    out: &mut Act,
    start: &Start,
    base: &[f32],
    kernels: &[f32],
    src: &Act,
    skips: &[(&[f32], &Act)],
) {
    let (n, h, w, c, cin) = (out.n, out.h, out.w, out.c, src.c);
    assert!(h.is_multiple_of(2) && w.is_multiple_of(2) && src.same_grid(out));
    assert_eq!(kernels.len(), 16 * cin * c);
    let (tiles_w, tiles_h) = (w / 2, h / 2);
    let threads = rayon::current_num_threads();
    let mut band_rows = TARGET_TILES.div_ceil(tiles_w).clamp(1, tiles_h);
    while band_rows > 1 && n * tiles_h.div_ceil(band_rows) < 4 * threads {
        band_rows = band_rows.div_ceil(2);
    }
    let row_len = out.row_len();
    let mut bands = Vec::new();
    for (img, image) in out.data.chunks_mut(row_len * (h + 2)).enumerate() {
        let (top, rest) = image.split_at_mut(row_len);
        let (mut body, bottom) = rest.split_at_mut(row_len * h);
        top.fill(0.0);
        bottom.fill(0.0);
        let mut ty0 = 0;
        while ty0 < tiles_h {
            let ty1 = (ty0 + band_rows).min(tiles_h);
            let (rows, more) = body.split_at_mut(2 * (ty1 - ty0) * row_len);
            bands.push(Band {
                img,
                ty0,
                ty1,
                rows,
            });
            body = more;
            ty0 = ty1;
        }
    }
    let pw = w + 2;
    bands.into_par_iter().for_each(|band| {
        let tiles = (band.ty1 - band.ty0) * tiles_w;
        SCRATCH.with_borrow_mut(|(v, m, t)| {
            let v = scratch(v, 16 * tiles * cin);
            let t = scratch(t, (4 * pw * cin).max(8 * c));
            let m = scratch(m, 16 * tiles * c);
            let row_floats = pw * cin;
            for ty in band.ty0..band.ty1 {
                // t = B^T d for the whole tile row at once: combinations of the 4 stored input
                // rows 2 ty ..= 2 ty + 3, shared by horizontally neighbouring tiles.
                let row = |r: usize| {
                    let at = src.at(band.img, 2 * ty + r, 0);
                    &src.data[at..at + row_floats]
                };
                let (t0, rest) = t.split_at_mut(row_floats);
                let (t1, rest) = rest.split_at_mut(row_floats);
                let (t2, rest) = rest.split_at_mut(row_floats);
                let t3 = &mut rest[..row_floats];
                combine(t0, row(0), row(2), -1.0);
                combine(t1, row(1), row(2), 1.0);
                combine(t2, row(2), row(1), -1.0);
                combine(t3, row(1), row(3), -1.0);
                let t: [&[f32]; 4] = [t0, t1, t2, t3];
                // Then B along each tile's 4 columns.
                for tx in 0..tiles_w {
                    let i = (ty - band.ty0) * tiles_w + tx;
                    let cols = t.map(|ti| &ti[2 * tx * cin..(2 * tx + 4) * cin]);
                    input_tile(cols, v, i * cin, tiles * cin);
                }
            }
            for xi in 0..16 {
                let seg = Seg {
                    a: v[xi * tiles * cin..].as_ptr(),
                    a_rs: cin,
                    k: cin,
                    b: kernels[xi * cin * c..].as_ptr(),
                    ldb: c,
                };
                let d = m[xi * tiles * c..].as_mut_ptr();
                // SAFETY: position xi's tiles x cin inputs and cin x c kernels, and its tiles x c
                // products, lie in v, kernels and m.
                unsafe { matmul(tiles, c, &[seg], d, c, Init::Zero, 1.0) };
            }
            let bias = &base[band.img * c..(band.img + 1) * c];
            for i in 0..tiles {
                let (ty, tx) = (band.ty0 + i / tiles_w, i % tiles_w);
                let local = 2 * (ty - band.ty0);
                let (upper, lower) =
                    band.rows[local * row_len..(local + 2) * row_len].split_at_mut(row_len);
                let px = (2 * tx + 1) * c..(2 * tx + 3) * c;
                let residual = start.residual.map(|res| {
                    let at = |r: usize| res.at(band.img, 2 * ty + r, 2 * tx + 1);
                    [
                        &res.data[at(1)..at(1) + 2 * c],
                        &res.data[at(2)..at(2) + 2 * c],
                    ]
                });
                let out = TileOut {
                    bias,
                    residual,
                    rows: [&mut upper[px.clone()], &mut lower[px]],
                };
                output_tile(m, t, i * c, tiles * c, out);
            }
        });
        for row in band.rows.chunks_exact_mut(row_len) {
            row[..c].fill(0.0);
            row[(pw - 1) * c..].fill(0.0);
        }
        if skips.is_empty() {
            return;
        }
        for (i, row) in band.rows.chunks_exact_mut(row_len).enumerate() {
            let y = 2 * band.ty0 + 1 + i;
            let segs: Vec<Seg> = skips
                .iter()
                .map(|(weights, x)| Seg {
                    a: x.data[x.at(band.img, y, 1)..].as_ptr(),
                    a_rs: x.c,
                    k: x.c,
                    b: weights.as_ptr(),
                    ldb: c,
                })
                .collect();
            // SAFETY: pixels 1..=w of row y of each input, [x.c][c] weights, this task's row.
            unsafe { matmul(w, c, &segs, row[c..].as_mut_ptr(), c, Init::Dst, 1.0) };
        }
    });
}

/// `d = a + sb * b` element-wise (`sb` is +-1, folded at each call).
#[inline(always)]
fn comb2(d: &mut [f32], a: &[f32], b: &[f32], sb: f32) {
    for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
        *d = a + sb * b;
    }
}

/// `d = a + sb * b + sc * c` element-wise.
#[inline(always)]
fn comb3(d: &mut [f32], a: &[f32], b: &[f32], c: &[f32], sb: f32, sc: f32) {
    for (((d, &a), &b), &c) in d.iter_mut().zip(a).zip(b).zip(c) {
        *d = a + sb * b + sc * c;
    }
}

#[inline(always)]
fn combine_body(d: &mut [f32], a: &[f32], b: &[f32], sign: f32) {
    if sign > 0.0 {
        comb2(d, a, b, 1.0);
    } else {
        comb2(d, a, b, -1.0);
    }
}

simd::dispatch! {
    /// `d = a + sign * b` element-wise (`sign` is +-1).
    fn combine(d: &mut [f32], a: &[f32], b: &[f32], sign: f32) => combine_body
}

#[inline(always)]
fn input_tile_body(t: [&[f32]; 4], v: &mut [f32], offset: usize, stride: usize) {
    let cin = t[0].len() / 4;
    // V = t B: along each row i of t (4 pixels), x0 - x2, x1 + x2, x2 - x1, x1 - x3.
    for (i, ti) in t.iter().enumerate() {
        let x = |col: usize| &ti[col * cin..(col + 1) * cin];
        let at = |j: usize| offset + (4 * i + j) * stride;
        comb2(&mut v[at(0)..at(0) + cin], x(0), x(2), -1.0);
        comb2(&mut v[at(1)..at(1) + cin], x(1), x(2), 1.0);
        comb2(&mut v[at(2)..at(2) + cin], x(2), x(1), -1.0);
        comb2(&mut v[at(3)..at(3) + cin], x(1), x(3), -1.0);
    }
}

simd::dispatch! {
    /// `(B^T d) B` of one tile from its 4 rows of `B^T d` (4 pixels each): position `p` of
    /// channel `ci` into `v[offset + p * stride + ci]`.
    fn input_tile(t: [&[f32]; 4], v: &mut [f32], offset: usize, stride: usize) => input_tile_body
}

/// Where one tile's outputs go: two rows of two pixels, plus the residual at those pixels.
struct TileOut<'a> {
    bias: &'a [f32],
    residual: Option<[&'a [f32]; 2]>,
    rows: [&'a mut [f32]; 2],
}

#[inline(always)]
fn output_tile_body(m: &[f32], s: &mut [f32], offset: usize, stride: usize, out: TileOut) {
    let c = out.bias.len();
    let m = |p: usize| &m[offset + p * stride..offset + p * stride + c];
    // s = A^T M: rows m0 + m1 + m2 and m1 - m2 - m3 (s[i][x] at (4 i + x) c).
    for x in 0..4 {
        comb3(
            &mut s[x * c..(x + 1) * c],
            m(x),
            m(4 + x),
            m(8 + x),
            1.0,
            1.0,
        );
        comb3(
            &mut s[(4 + x) * c..(5 + x) * c],
            m(4 + x),
            m(8 + x),
            m(12 + x),
            -1.0,
            -1.0,
        );
    }
    // Y = s A, plus bias and residual.
    let TileOut {
        bias,
        residual,
        rows,
    } = out;
    for (i, row) in rows.into_iter().enumerate() {
        let s = |x: usize| &s[(4 * i + x) * c..(4 * i + x + 1) * c];
        let (left, right) = row.split_at_mut(c);
        comb3(left, s(0), s(1), s(2), 1.0, 1.0);
        comb3(right, s(1), s(2), s(3), -1.0, -1.0);
        for (px, d) in [left, right].into_iter().enumerate() {
            match residual {
                Some(res) => {
                    let r = &res[i][px * c..(px + 1) * c];
                    for ((d, &b), &r) in d.iter_mut().zip(bias).zip(r) {
                        *d += b + r;
                    }
                }
                None => {
                    for (d, &b) in d.iter_mut().zip(bias) {
                        *d += b;
                    }
                }
            }
        }
    }
}

simd::dispatch! {
    /// `A^T M A` of one tile plus bias (and residual) into two rows of two output pixels; `s`
    /// is scratch of 8 x c.
    fn output_tile(m: &[f32], s: &mut [f32], offset: usize, stride: usize, out: TileOut) => output_tile_body
}

#[cfg(test)]
mod tests {
    use super::super::conv::{Conv1x1, Conv3x3, Term, convolve};
    use super::*;
    use crate::unet::layers::tensor::testing::{
        from_act, naive_conv, on_both_paths, rel_err, to_act, values,
    };

    #[test]
    fn winograd_matches_direct_convolution_with_time_vector_residual_and_skips() {
        on_both_paths(|| {
            for (n, cin, cout, h, w) in [
                (2, 9, 11, 6, 10),
                (1, 16, 8, 2, 2),
                (3, 8, 33, 8, 4),
                (1, 8, 16, 40, 6),
            ] {
                let x = values(n * cin * h * w, 1);
                let skip_in = values(n * 5 * h * w, 2);
                let res = values(n * cout * h * w, 3);
                let per_image = values(n * cout, 4);
                let weight = values(cout * cin * 9, 5);
                let w1 = values(cout * 5, 6);
                let bias = values(cout, 7);
                let conv = Conv3x3::from_torch(&weight, bias.clone(), cin, cout);
                let skip = Conv1x1::from_torch(&w1, vec![0.0; cout], 5, cout);
                let (src, sk, r) = (
                    to_act(&x, n, cin, h, w),
                    to_act(&skip_in, n, 5, h, w),
                    to_act(&res, n, cout, h, w),
                );
                let mut out = Act {
                    data: vec![f32::NAN; n * (h + 2) * (w + 2) * cout],
                    n,
                    h,
                    w,
                    c: cout,
                };
                let start = Start {
                    bias: &conv.bias,
                    per_image: Some(&per_image),
                    residual: Some(&r),
                };
                convolve(
                    &mut out,
                    start,
                    &[
                        Term::Conv3(&conv, &src),
                        Term::Conv1(skip.input_rows(0, 5), &sk),
                    ],
                );
                let (direct, _, _) = naive_conv(&x, &weight, &bias, n, cin, cout, h, w, 3, 1);
                let (skipped, _, _) =
                    naive_conv(&skip_in, &w1, &vec![0.0; cout], n, 5, cout, h, w, 1, 1);
                let want: Vec<f32> = (0..direct.len())
                    .map(|i| {
                        let (img, ch) = (i / (cout * h * w), (i / (h * w)) % cout);
                        direct[i] + skipped[i] + res[i] + per_image[img * cout + ch]
                    })
                    .collect();
                let err = rel_err(&from_act(&out), &want);
                assert!(err < 2e-6, "{n} {cin} {cout} {h}x{w}: {err}");
            }
        });
    }
}
