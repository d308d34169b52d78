//! The definitions: full 3D FFTs in f64, as TorchIO computes them.

use rustfft::FftPlanner;

use super::*;

// ------------------------------------------------------------------------------------------
// Reference: TorchIO's FourierTransform in f64

pub(super) fn coords(e: usize, dims: [usize; 3]) -> [usize; 3] {
    [
        e % dims[0],
        (e / dims[0]) % dims[1],
        e / (dims[0] * dims[1]),
    ]
}

/// `fftshift(fftn(x))`.
pub(super) fn spectrum_reference(x: &[f32], dims: [usize; 3]) -> Vec<C64> {
    let mut s: Vec<C64> = x.iter().map(|&v| C64::new(v as f64, 0.0)).collect();
    fft3_reference(&mut s, dims, false);
    let mut out = vec![C64::new(0.0, 0.0); s.len()];
    for (e, v) in s.iter().enumerate() {
        let u = coords(e, dims);
        let t: [usize; 3] = std::array::from_fn(|a| shifted(u[a], dims[a]));
        out[t[0] + dims[0] * (t[1] + dims[1] * t[2])] = *v;
    }
    out
}

/// `ifftn(ifftshift(s)).real` as f32.
pub(super) fn image_reference(s: Vec<C64>, dims: [usize; 3]) -> Vec<f32> {
    let mut u = vec![C64::new(0.0, 0.0); s.len()];
    for (e, v) in s.iter().enumerate() {
        let t = coords(e, dims);
        let q: [usize; 3] = std::array::from_fn(|a| unshifted(t[a], dims[a]));
        u[q[0] + dims[0] * (q[1] + dims[1] * q[2])] = *v;
    }
    fft3_reference(&mut u, dims, true);
    let n = u.len() as f64;
    u.iter().map(|v| (v.re / n) as f32).collect()
}

/// Unnormalised 3D FFT (forward or inverse), one axis after the other.
pub(super) fn fft3_reference(s: &mut [C64], dims: [usize; 3], inverse: bool) {
    let mut planner = FftPlanner::<f64>::new();
    for axis in 0..3 {
        let n = dims[axis];
        let fft = if inverse {
            planner.plan_fft_inverse(n)
        } else {
            planner.plan_fft_forward(n)
        };
        let stride = [1, dims[0], dims[0] * dims[1]][axis];
        let mut line = vec![C64::new(0.0, 0.0); n];
        for e in 0..s.len() {
            if coords(e, dims)[axis] != 0 {
                continue;
            }
            for (t, v) in line.iter_mut().enumerate() {
                *v = s[e + t * stride];
            }
            fft.process(&mut line);
            for (t, v) in line.iter().enumerate() {
                s[e + t * stride] = *v;
            }
        }
    }
}
