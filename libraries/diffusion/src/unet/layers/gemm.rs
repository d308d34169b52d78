//! The one door to the `gemm` crate: single-threaded f32 products on strided matrices (callers
//! parallelise over row blocks themselves, so that each block's accumulations stay in cache).

/// A row-major view: element `(r, c)` at `ptr + r * rs + c * cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

/// `dst (m x n) = (accumulate ? dst : 0) + beta * lhs (m x k) * rhs (k x n)`.
///
/// # Safety
/// Every element the three views address for these `m`, `n`, `k` must be in bounds of live
/// allocations; `dst`'s elements must not be read or written by anyone else meanwhile, and
/// must not overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    beta: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: forwarded to the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            1.0,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

pub(crate) use super::kernel::{Init, Seg};

/// `dst (rows x cols, row stride ldd) = init + sum_s A_s B_s` (for `Init::Zero`, the sum times
/// `scale`), with the AVX-512 tile kernel where there is one, else one `gemm` call per segment.
///
/// # Safety
/// As for `kernel::product`, without the `available` condition.
pub(crate) unsafe fn matmul(
    rows: usize,
    cols: usize,
    segs: &[Seg],
    dst: *mut f32,
    ldd: usize,
    init: Init,
    scale: f32,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    if super::kernel::available(cols) && !super::simd::forced_baseline() {
        // SAFETY: forwarded; `available` checked.
        unsafe { super::kernel::product(rows, cols, segs, dst, ldd, init, scale) };
        return;
    }
    if let Init::Bias { bias, residual } = init {
        for r in 0..rows {
            // SAFETY: row r of dst and of the residual, cols floats of the bias: in bounds by
            // the caller's contract.
            unsafe {
                let d = std::slice::from_raw_parts_mut(dst.add(r * ldd), cols);
                let b = std::slice::from_raw_parts(bias, cols);
                match residual {
                    Some((res, ld)) => {
                        let x = std::slice::from_raw_parts(res.add(r * ld), cols);
                        super::simd::add(b, x, d);
                    }
                    None => d.copy_from_slice(b),
                }
            }
        }
    }
    let accumulate = !matches!(init, Init::Zero);
    for (i, s) in segs.iter().enumerate() {
        let lhs = Mat {
            ptr: s.a,
            rs: s.a_rs as isize,
            cs: 1,
        };
        let rhs = Mat {
            ptr: s.b,
            rs: s.ldb as isize,
            cs: 1,
        };
        let beta = if accumulate { 1.0 } else { scale };
        // SAFETY: forwarded to the caller.
        unsafe {
            gemm(
                rows,
                cols,
                s.k,
                dst,
                ldd as isize,
                accumulate || i > 0,
                lhs,
                rhs,
                beta,
            )
        };
    }
}
