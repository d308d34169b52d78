//! Ghosting: every n-th plane of k-space along one axis scaled.

use rustfft::FftPlanner;

use super::lines::*;
use super::reference::*;
use super::*;
use crate::volume::Volume;

// ------------------------------------------------------------------------------------------
// Ghosting

/// TorchIO `Ghosting.add_artifact`, in place. Along array axis `axis` (length `n`) the planes
/// `S[::num_ghosts]` of the shifted spectrum are multiplied by `1 - intensity`, then the slab
/// `[n/2 - m/2, n/2 + m/2)` with `m = round(restore·n)` (numpy rounding, half to even) is put
/// back as it was. `num_ghosts == 0` or `intensity == 0` returns the input untouched, as in
/// TorchIO. `restore: None` (TorchIO's default) restores the plane `n/2` alone; every
/// `restore` with `m < 2` restores nothing, as TorchIO does.
pub fn ghosting(vol: &mut Volume, num_ghosts: u32, axis: u8, intensity: f64, restore: Option<f64>) {
    if num_ghosts == 0 || intensity == 0.0 {
        return;
    }
    let a = axis as usize;
    let n = vol.dims[a];
    let g = ghost_gains(n, num_ghosts, intensity, restore);
    let h: Vec<f32> = (0..n)
        .map(|u| ((g[shifted(u, n)] + g[shifted((n - u) % n, n)]) / 2.0) as f32)
        .collect();
    let mut planner = FftPlanner::<f32>::new();
    let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let scale = 1.0 / n as f32;
    let scratch_len = fwd
        .get_inplace_scratch_len()
        .max(inv.get_inplace_scratch_len());
    map_line_pairs(
        &mut vol.data,
        &[],
        vol.dims,
        a,
        scratch_len,
        |bufs, pairs, scratch| {
            let buf = &mut bufs[0][..pairs * n];
            fwd.process_with_scratch(buf, scratch);
            for line in buf.chunks_mut(n) {
                for (v, &w) in line.iter_mut().zip(&h) {
                    *v *= w * scale;
                }
            }
            inv.process_with_scratch(buf, scratch);
        },
    );
}

/// The factor applied to each plane of the shifted spectrum (index `s` along the axis).
pub(super) fn ghost_gains(
    n: usize,
    num_ghosts: u32,
    intensity: f64,
    restore: Option<f64>,
) -> Vec<f64> {
    let (lo, hi) = restore_slab(n, restore);
    (0..n)
        .map(|s| {
            if s.is_multiple_of(num_ghosts as usize) && !(lo..hi).contains(&s) {
                1.0 - intensity
            } else {
                1.0
            }
        })
        .collect()
}

/// TorchIO `Ghosting._get_slices_to_restore`: `slice(mid - m//2, mid + m//2)`, `mid = n//2`,
/// `m = int(np.round(restore·n))`; `None`: `slice(mid, mid + 1)`.
pub(super) fn restore_slab(n: usize, restore: Option<f64>) -> (usize, usize) {
    let mid = n / 2;
    let Some(restore) = restore else {
        return (mid, mid + 1);
    };
    let m = (restore * n as f64).round_ties_even().clamp(0.0, n as f64) as usize;
    (mid - (m / 2).min(mid), (mid + m / 2).min(n))
}

/// [`ghosting`] as TorchIO computes it: full 3D FFT (f64), shifted spectrum edited in place.
pub fn ghosting_reference(
    vol: &Volume,
    num_ghosts: u32,
    axis: u8,
    intensity: f64,
    restore: Option<f64>,
) -> Vec<f32> {
    if num_ghosts == 0 || intensity == 0.0 {
        return vol.data.clone();
    }
    let a = axis as usize;
    let dims = vol.dims;
    let n = dims[a];
    let mut s = spectrum_reference(&vol.data, dims);
    let (lo, hi) = restore_slab(n, restore);
    let kept: Vec<(usize, C64)> = (0..s.len())
        .filter(|&e| (lo..hi).contains(&coords(e, dims)[a]))
        .map(|e| (e, s[e]))
        .collect();
    for (e, v) in s.iter_mut().enumerate() {
        if coords(e, dims)[a].is_multiple_of(num_ghosts as usize) {
            *v *= 1.0 - intensity;
        }
    }
    for (e, v) in kept {
        s[e] = v;
    }
    image_reference(s, dims)
}
