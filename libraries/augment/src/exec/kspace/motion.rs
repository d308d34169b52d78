//! Motion: k-space assembled from rigidly moved copies, segment by segment along one axis.

use rustfft::FftPlanner;

use super::lines::*;
use super::reference::*;
use super::*;
use crate::exec::warp::resample_world;
use crate::spec::Interpolation;
use crate::volume::{Affine, Volume};

// ------------------------------------------------------------------------------------------
// Motion

/// TorchIO `Motion.add_artifact`, in place. Each movement `m` (degrees, translation in mm) is a
/// rigid resampling of the volume (padded with the volume's minimum, `interpolation`); the
/// original and the moved copies are Fourier transformed, and the k-space planes along array
/// axis 2 (the last, TorchIO's `spectrum[..., ini:fin]`) are taken from copy after copy:
/// segment `m` spans `[int(nk·t[m-1]), int(nk·t[m]))` of the shifted spectrum (f32 product,
/// truncated; the last ends at `nk`), and the original's spectrum is swapped into the segment
/// that holds the k-space centre (TorchIO `sort_spectra`: the first `m` with `t[m] > 0.5`, else
/// the last). Result: the real part of the inverse FFT.
///
/// The rigid maps are TorchIO's `get_rigid_transforms`: an ITK `Euler3DTransform` with
/// rotation `Rz·Rx·Ry` (angles in radians, ITK's default order) and translation `t`, in LPS;
/// TorchIO rebuilds it from `GetMatrix()` and `GetTranslation()`, which drops the centre it
/// set, so the rotation is about the world origin: input = `R·p + t` for output point `p`
/// (LPS). In RAS (x and y negated): `F·R·F` and `F·t`, `F = diag(-1, -1, 1)` (see
/// [`motion_map`]). A 2D image (`nk = 1`) has one plane, so the result is the copy whose
/// segment holds it, as in TorchIO. The resamplings are [`resample_world`]'s, so its rounding
/// (f32 coordinates) decides near-ties of nearest neighbour.
pub fn motion(
    vol: &mut Volume,
    degrees: &[[f64; 3]],
    translation: &[[f64; 3]],
    times: &[f64],
    interpolation: Interpolation,
) {
    let n = degrees.len().min(translation.len()).min(times.len());
    if n == 0 {
        return;
    }
    let pad = vol.min_max().0;
    let moved: Vec<Vec<f32>> = (0..n)
        .map(|m| {
            resample_world(
                vol,
                &motion_map(degrees[m], translation[m]),
                interpolation,
                pad,
            )
        })
        .collect();
    let nk = vol.dims[2];
    let owner = segment_owner(nk, &times[..n]);
    let perm = centre_swap(&times[..n]);
    // Image s fills the planes of segment perm[s].
    let h: Vec<Vec<f32>> = (0..=n)
        .map(|s| {
            let mask = |u: usize| (owner[shifted(u, nk)] == perm[s]) as u8 as f32;
            (0..nk)
                .map(|u| (mask(u) + mask((nk - u) % nk)) / 2.0)
                .collect()
        })
        .collect();
    let mut planner = FftPlanner::<f32>::new();
    let (fwd, inv) = (planner.plan_fft_forward(nk), planner.plan_fft_inverse(nk));
    let scale = 1.0 / nk as f32;
    let extra: Vec<&[f32]> = moved.iter().map(|v| &v[..]).collect();
    let scratch_len = fwd
        .get_inplace_scratch_len()
        .max(inv.get_inplace_scratch_len());
    map_line_pairs(
        &mut vol.data,
        &extra,
        vol.dims,
        2,
        scratch_len,
        |bufs, pairs, scratch| {
            let len = pairs * nk;
            for b in bufs.iter_mut() {
                fwd.process_with_scratch(&mut b[..len], scratch);
            }
            let (first, rest) = bufs.split_at_mut(1);
            for (p, acc) in first[0][..len].chunks_mut(nk).enumerate() {
                for (u, v) in acc.iter_mut().enumerate() {
                    let mut sum = *v * h[0][u];
                    for (s, b) in rest.iter().enumerate() {
                        sum += b[p * nk + u] * h[s + 1][u];
                    }
                    *v = sum * scale;
                }
            }
            inv.process_with_scratch(&mut first[0][..len], scratch);
        },
    );
}

/// The RAS map (output world point → input world point) of one TorchIO movement.
pub fn motion_map(degrees: [f64; 3], translation: [f64; 3]) -> Affine {
    let r = crate::exec::warp::euler_zxy(degrees);
    let f = [-1.0, -1.0, 1.0];
    let mut m = [[0.0; 4]; 4];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = f[i] * r[i][j] * f[j];
        }
        m[i][3] = f[i] * translation[i];
    }
    m[3][3] = 1.0;
    m
}

/// For each position `s` of the shifted spectrum along axis 2, the segment whose spectrum it
/// takes (later segments overwrite earlier ones, as TorchIO's slice assignments do).
pub(super) fn segment_owner(nk: usize, times: &[f64]) -> Vec<usize> {
    let mut ends: Vec<usize> = times
        .iter()
        .map(|&t| ((nk as f32 * t as f32) as i64).clamp(0, nk as i64) as usize)
        .collect();
    ends.push(nk);
    let mut owner = vec![0usize; nk];
    let mut ini = 0;
    for (m, &fin) in ends.iter().enumerate() {
        for o in owner.iter_mut().take(fin).skip(ini) {
            *o = m;
        }
        ini = fin;
    }
    owner
}

/// TorchIO `sort_spectra`: segment `m` takes image `perm[m]` (0 the original, `1..` the moved
/// copies), the original swapped with the copy of the segment holding the centre.
pub(super) fn centre_swap(times: &[f64]) -> Vec<usize> {
    let index = times
        .iter()
        .position(|&t| t as f32 > 0.5)
        .unwrap_or(times.len());
    let mut perm: Vec<usize> = (0..=times.len()).collect();
    perm.swap(0, index);
    perm
}

/// [`motion`] as TorchIO computes it: full 3D FFT (f64) of every copy, planes assembled along
/// axis 2 of the shifted spectra, inverse, real part.
pub fn motion_reference(
    vol: &Volume,
    degrees: &[[f64; 3]],
    translation: &[[f64; 3]],
    times: &[f64],
    interpolation: Interpolation,
) -> Vec<f32> {
    let dims = vol.dims;
    let pad = vol.min_max().0;
    let mut images = vec![vol.data.clone()];
    for m in 0..degrees.len() {
        images.push(resample_world(
            vol,
            &motion_map(degrees[m], translation[m]),
            interpolation,
            pad,
        ));
    }
    let mut spectra: Vec<Vec<C64>> = images.iter().map(|x| spectrum_reference(x, dims)).collect();
    let index = times
        .iter()
        .position(|&t| t as f32 > 0.5)
        .unwrap_or(spectra.len() - 1);
    spectra.swap(0, index);
    let nk = dims[2];
    let mut ends: Vec<usize> = times
        .iter()
        .map(|&t| (nk as f32 * t as f32) as usize)
        .collect();
    ends.push(nk);
    let mut result = vec![C64::new(0.0, 0.0); vol.len()];
    let mut ini = 0;
    for (spectrum, &fin) in spectra.iter().zip(&ends) {
        for (e, v) in result.iter_mut().enumerate() {
            let k = coords(e, dims)[2];
            if ini <= k && k < fin {
                *v = spectrum[e];
            }
        }
        ini = fin;
    }
    image_reference(result, dims)
}
