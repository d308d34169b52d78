//! A register-tiled AVX-512 matrix product for the hot paths, used instead of the `gemm` crate
//! where the CPU has AVX-512: `dst[r][0..cols] (+)= sum over segments s of A_s[r] B_s`.
//!
//! Nothing is packed per call: the right-hand matrices are packed once at load (weights) and
//! the left-hand rows are read in place and broadcast one value at a time (a convolution's
//! overlapping input rows, attention's strided queries). The work runs in passes of at most
//! 2048 rows of B, so that block of B stays in L2 while every row tile runs over it. A tile is P rows x V vectors of 16 columns (6 x 64, 12 x 32 or 14 x 16: 24 or
//! fewer accumulators of the 32 registers); the last, partial vector of columns is masked.

use super::simd::{Level, level};

/// One product term: rows `a + r * a_rs` of `k` values, times `b` (`k` rows at stride `ldb`).
#[derive(Clone, Copy)]
pub(crate) struct Seg {
    pub a: *const f32,
    pub a_rs: usize,
    pub k: usize,
    pub b: *const f32,
    pub ldb: usize,
}

/// What a product starts from before the segments are added.
#[derive(Clone, Copy)]
pub(crate) enum Init {
    /// Zero (then the sum is multiplied by the product's scale).
    Zero,
    /// What `dst` holds.
    Dst,
    /// `bias[c]`, plus `residual[r][c]` (row stride `ld`) if given.
    Bias {
        bias: *const f32,
        residual: Option<(*const f32, usize)>,
    },
}

/// Whether `product` can run here (AVX-512) for a product `cols` wide.
pub(crate) fn available(cols: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cols >= 8 && level() == Level::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (cols, level());
        false
    }
}

/// `dst[r][c] = init[r][c] + sum_s sum_i A_s[r][i] B_s[i][c]` for `r < rows`, `c < cols`;
/// for `Init::Zero`, that sum times `scale`.
///
/// # Safety
/// `available(cols)` must hold; every addressed element of the segments and of `dst` (row
/// stride `ldd`) must be in bounds, and `dst` not aliased by them or by anyone else.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn product(
    rows: usize,
    cols: usize,
    segs: &[Seg],
    dst: *mut f32,
    ldd: usize,
    init: Init,
    scale: f32,
) {
    debug_assert!(available(cols));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded to the caller, who checked `available` (AVX-512).
    unsafe {
        avx512::product(rows, cols, segs, dst, ldd, init, scale)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (rows, cols, segs, dst, ldd, init, scale);
        unreachable!("no AVX-512 product on this architecture")
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Init, Seg};

    /// What every tile of one pass shares: some segments (or a block of one's k).
    #[derive(Clone, Copy)]
    struct Job<'a> {
        segs: &'a [Seg],
        dst: *mut f32,
        ldd: usize,
        init: Init,
        /// Multiplies the sum before it is stored.
        scale: f32,
    }

    /// Rows of B per pass (all segments together): 2048 x 64 floats, 512 KiB, stays in L2
    /// while every row tile of the product runs over it. A convolution (k <= 9 x 128) is one
    /// pass, its accumulators held in registers across all taps; attention over 4096 keys
    /// takes two.
    const K_PASS: usize = 2048;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn product(
        rows: usize,
        cols: usize,
        segs: &[Seg],
        dst: *mut f32,
        ldd: usize,
        init: Init,
        scale: f32,
    ) {
        let scaled = matches!(init, Init::Zero);
        // Passes of at most K_PASS rows of B; the first starts from dst or zero, the last
        // applies the scale.
        let mut passes: Vec<Vec<Seg>> = vec![Vec::new()];
        let mut in_pass = 0;
        for s in segs {
            let mut k0 = 0;
            while k0 < s.k {
                if in_pass == K_PASS {
                    passes.push(Vec::new());
                    in_pass = 0;
                }
                let k = (s.k - k0).min(K_PASS - in_pass);
                passes.last_mut().expect("a pass").push(Seg {
                    a: s.a.wrapping_add(k0),
                    k,
                    b: s.b.wrapping_add(k0 * s.ldb),
                    ..*s
                });
                in_pass += k;
                k0 += k;
            }
        }
        let last = passes.len() - 1;
        let mut col = 0;
        while col < cols {
            let (vectors, width) = match cols - col {
                64.. => (4, 64),
                32.. => (2, 32),
                left => (1, left.min(16)),
            };
            let mask = if width >= 16 {
                !0
            } else {
                ((1u32 << width) - 1) as u16
            };
            for (i, pass) in passes.iter().enumerate() {
                let job = Job {
                    segs: pass,
                    dst,
                    ldd,
                    init: if i == 0 { init } else { Init::Dst },
                    scale: if scaled && i == last { scale } else { 1.0 },
                };
                // SAFETY: the caller's contract covers rows x cols; this pass touches columns
                // col..col + width within it (the last vector masked to `cols`).
                unsafe {
                    match vectors {
                        4 => rows_of::<4>(job, rows, col, mask),
                        2 => rows_of::<2>(job, rows, col, mask),
                        _ => rows_of::<1>(job, rows, col, mask),
                    }
                }
            }
            col += width;
        }
    }

    /// All rows of one column block: full tiles, then one shorter tile for the rest.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows_of<const V: usize>(job: Job, rows: usize, col: usize, mask: u16) {
        // 24 accumulators at most (28 registers with the right-hand vectors).
        let full = match V {
            4 => 6,
            2 => 12,
            _ => 14,
        };
        let mut r = 0;
        // SAFETY: tiles cover rows r..r + P < rows.
        unsafe {
            while r + full <= rows {
                match V {
                    4 => tile::<4, 6>(job, r, col, mask),
                    2 => tile::<2, 12>(job, r, col, mask),
                    _ => tile::<1, 14>(job, r, col, mask),
                }
                r += full;
            }
            let left = rows - r;
            macro_rules! tail {
                ($($p:literal)*) => {
                    match left {
                        0 => {}
                        $($p => tile::<V, $p>(job, r, col, mask),)*
                        _ => unreachable!(),
                    }
                };
            }
            tail!(1 2 3 4 5 6 7 8 9 10 11 12 13);
        }
    }

    /// One P x (16 V) tile at row `r0`, column `col`; the last vector's lanes masked by `mask`.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const V: usize, const P: usize>(job: Job, r0: usize, col: usize, mask: u16) {
        let lane_mask = |v: usize| if v + 1 == V { mask } else { !0 };
        // SAFETY: the caller guarantees rows r0..r0 + P and the masked columns are in bounds.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; P];
            match job.init {
                Init::Zero => {}
                Init::Dst => {
                    for (p, row) in acc.iter_mut().enumerate() {
                        let d = job.dst.add((r0 + p) * job.ldd + col);
                        for (v, a) in row.iter_mut().enumerate() {
                            *a = _mm512_maskz_loadu_ps(lane_mask(v), d.add(16 * v));
                        }
                    }
                }
                Init::Bias { bias, residual } => {
                    let mut bv = [_mm512_setzero_ps(); V];
                    for (v, b) in bv.iter_mut().enumerate() {
                        *b = _mm512_maskz_loadu_ps(lane_mask(v), bias.add(col + 16 * v));
                    }
                    for (p, row) in acc.iter_mut().enumerate() {
                        *row = bv;
                        if let Some((res, ld)) = residual {
                            let r = res.add((r0 + p) * ld + col);
                            for (v, a) in row.iter_mut().enumerate() {
                                *a = _mm512_add_ps(
                                    *a,
                                    _mm512_maskz_loadu_ps(lane_mask(v), r.add(16 * v)),
                                );
                            }
                        }
                    }
                }
            }
            for s in job.segs {
                let a = s.a.add(r0 * s.a_rs);
                let mut b = s.b.add(col);
                for i in 0..s.k {
                    let mut w = [_mm512_setzero_ps(); V];
                    for (v, wv) in w.iter_mut().enumerate() {
                        *wv = _mm512_maskz_loadu_ps(lane_mask(v), b.add(16 * v));
                    }
                    for (p, row) in acc.iter_mut().enumerate() {
                        let x = _mm512_set1_ps(*a.add(p * s.a_rs + i));
                        for (acc_v, &wv) in row.iter_mut().zip(&w) {
                            *acc_v = _mm512_fmadd_ps(x, wv, *acc_v);
                        }
                    }
                    b = b.add(s.ldb);
                }
            }
            let scaled = job.scale != 1.0;
            let scale = _mm512_set1_ps(job.scale);
            for (p, row) in acc.iter().enumerate() {
                let d = job.dst.add((r0 + p) * job.ldd + col);
                for (v, &a) in row.iter().enumerate() {
                    let out = if scaled { _mm512_mul_ps(a, scale) } else { a };
                    _mm512_mask_storeu_ps(d.add(16 * v), lane_mask(v), out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::layers::tensor::testing::{rel_err, values};

    #[test]
    fn the_tiled_product_sums_its_segments_for_every_width_and_row_count() {
        if !available(16) {
            println!("skipped: no AVX-512");
            return;
        }
        for (rows, cols, k1, k2) in [
            (1, 8, 3, 5),
            (13, 17, 4, 1),
            (29, 64, 9, 7),
            (31, 100, 6, 2),
            (7, 33, 2, 3),
        ] {
            let a1 = values(rows * k1, 1);
            let b1 = values(k1 * cols, 2);
            let a2 = values(rows * (k2 + 3), 3); // row stride k2 + 3
            let b2 = values(k2 * (cols + 5), 4); // row stride cols + 5
            let start = values(rows * (cols + 2), 5);
            let bias = values(cols, 6);
            let residual = values(rows * (cols + 1), 7);
            for mode in 0..4 {
                let init = match mode {
                    0 => Init::Zero,
                    1 => Init::Dst,
                    2 => Init::Bias {
                        bias: bias.as_ptr(),
                        residual: None,
                    },
                    _ => Init::Bias {
                        bias: bias.as_ptr(),
                        residual: Some((residual.as_ptr(), cols + 1)),
                    },
                };
                let mut dst = start.clone();
                let segs = [
                    Seg {
                        a: a1.as_ptr(),
                        a_rs: k1,
                        k: k1,
                        b: b1.as_ptr(),
                        ldb: cols,
                    },
                    Seg {
                        a: a2.as_ptr(),
                        a_rs: k2 + 3,
                        k: k2,
                        b: b2.as_ptr(),
                        ldb: cols + 5,
                    },
                ];
                // SAFETY: the buffers hold rows x k and k x cols at the strides given.
                unsafe { product(rows, cols, &segs, dst.as_mut_ptr(), cols + 2, init, 0.5) };
                let mut want = start.clone();
                for r in 0..rows {
                    for c in 0..cols {
                        let mut s = 0.0f64;
                        for i in 0..k1 {
                            s += a1[r * k1 + i] as f64 * b1[i * cols + c] as f64;
                        }
                        for i in 0..k2 {
                            s += a2[r * (k2 + 3) + i] as f64 * b2[i * (cols + 5) + c] as f64;
                        }
                        let d = &mut want[r * (cols + 2) + c];
                        *d = match mode {
                            0 => 0.5 * s as f32,
                            1 => *d + s as f32,
                            2 => bias[c] + s as f32,
                            _ => bias[c] + residual[r * (cols + 1) + c] + s as f32,
                        };
                    }
                }
                assert!(rel_err(&dst, &want) < 1e-6, "{rows}x{cols} mode {mode}");
            }
        }
    }
}
