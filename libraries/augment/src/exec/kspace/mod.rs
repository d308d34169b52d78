//! k-space artefacts: TorchIO `Ghosting`, `Spike` and `Motion`
//! (`transforms/augmentation/intensity/random_{ghosting,spike,motion}.py`, with
//! `transforms/fourier.py`). TorchIO takes `S = fftshift(fftn(x))` over the three axes (complex64),
//! edits `S`, and returns `ifftn(ifftshift(S)).real` as f32 (the real part, not the magnitude).
//!
//! None of the three needs the 3D FFT here:
//!
//! - When the edit multiplies `S` by a factor that depends only on the index along one axis
//!   (ghosting; motion's time segments, which pick per index along axis 2 which moved copy the
//!   k-space comes from), the FFTs along the other two axes cancel against their inverses, so
//!   1D FFTs along that axis give the same image. For a real image, `Re(ifft(g·fft(x)))` equals
//!   `ifft(h·fft(x))` with `h(u) = (g(u) + g(-u)) / 2` (real and even), which is real: two real
//!   lines are packed as one complex line and transformed together.
//! - A spike adds `A` at one k-space index `u`; the inverse FFT turns that into
//!   `(A / N)·cos(2π Σ u_a r_a / n_a)` added to the image, so only `A = intensity · max|S|` is
//!   needed. For a non-negative image `max|S| = |S(0)| = Σ x` exactly; otherwise (or when a
//!   spike lands on the maximum and another follows) an f32 FFT of half the spectrum gives it
//!   (`|S(-u)| = |S(u)|` for a real image). A second spike needs `S` at the first one's
//!   position: one DFT coefficient, a separable sum.
//!
//! The `*_reference` functions are the definitions, written as TorchIO computes them (full 3D
//! FFT in f64, shifts, edits, inverse, real part); the tests prove the fast paths equal them.
//!
//! Results are the same whatever the thread count (every sum has a fixed order); rustfft picks
//! SIMD code paths at run time, so the last bits may differ between CPUs.

mod ghosting;
mod lines;
mod motion;
mod reference;
mod spike;

use rustfft::num_complex::Complex;

pub use ghosting::{ghosting, ghosting_reference};
pub(crate) use lines::row_groups;
pub use motion::{motion, motion_map, motion_reference};
pub use spike::{spike, spike_reference};

type C32 = Complex<f32>;
type C64 = Complex<f64>;

/// Where `fftshift` puts the unshifted FFT index `u` of a line of `n`: `(u + n/2) mod n`.
#[inline]
pub fn shifted(u: usize, n: usize) -> usize {
    (u + n / 2) % n
}

/// The unshifted FFT index at position `s` of the shifted spectrum (the inverse of [`shifted`]).
#[inline]
pub fn unshifted(s: usize, n: usize) -> usize {
    (s + n - n / 2) % n
}
