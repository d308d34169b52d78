//! Executing a plan on the CPU: consecutive spatial transforms become one resampling
//! ([`warp`]), consecutive point-wise ones one pass ([`intensity`]); the rest run one by one.

pub mod blur;
pub mod intensity;
pub mod kspace;
pub mod resize;
pub mod swap;
pub mod warp;

use anyhow::{Result, bail};

use crate::plan::{Applied, Plan};
use crate::rng::{Purpose, Stream};
use crate::spec::{Interpolation, PadName, PadValue};
use crate::volume::Volume;
use intensity::PointStep;
use warp::{ElasticField, Step};

/// Runs `plan` on `vol` (and the label map carried with it, moved in lockstep with nearest
/// neighbour; intensity transforms leave it alone).
pub fn run(plan: &Plan, vol: Volume, label: Option<Volume>) -> Result<(Volume, Option<Volume>)> {
    check_label(&vol, label.as_ref())?;
    run_from(plan, 0, vol, label)
}

/// Like [`run`] on borrowed input, for many variants of one volume: a plan that starts by
/// moving voxels resamples straight from the input, without copying it first.
pub fn run_borrowed(
    plan: &Plan,
    vol: &Volume,
    label: Option<&Volume>,
) -> Result<(Volume, Option<Volume>)> {
    check_label(vol, label)?;
    let t = &plan.transforms;
    let n = t.iter().take_while(|a| a.is_spatial()).count();
    if n == 0 {
        let mut out = Volume {
            data: crate::volume::zeroed(vol.len()),
            ..vol.clone_empty()
        };
        // Point-wise steps first: they read the input and write the copy in the same pass.
        let steps: Vec<PointStep> = t
            .iter()
            .map_while(|a| PointStep::of(a, plan.seed, plan.variant, vol.dims))
            .collect();
        if steps.is_empty() {
            out.data.copy_from_slice(&vol.data);
        } else {
            intensity::run_points_from(Some(&vol.data), &mut out, &steps);
        }
        return run_from(plan, steps.len(), out, label.cloned());
    }
    let (data, label_data) = spatial(plan, &t[..n], vol, label);
    let moved = Volume {
        data,
        ..vol.clone_empty()
    };
    let moved_label = label.zip(label_data).map(|(l, d)| Volume {
        data: d,
        ..l.clone_empty()
    });
    run_from(plan, n, moved, moved_label)
}

fn check_label(vol: &Volume, label: Option<&Volume>) -> Result<()> {
    if let Some(l) = label
        && l.dims != vol.dims
    {
        bail!(
            "the label map is {:?} voxels, the image {:?}",
            l.dims,
            vol.dims
        );
    }
    Ok(())
}

fn run_from(
    plan: &Plan,
    start: usize,
    mut vol: Volume,
    mut label: Option<Volume>,
) -> Result<(Volume, Option<Volume>)> {
    let t = &plan.transforms;
    let mut i = start;
    while i < t.len() {
        if t[i].is_spatial() {
            let end = i + t[i..].iter().take_while(|a| a.is_spatial()).count();
            let (data, label_data) = spatial(plan, &t[i..end], &vol, label.as_ref());
            vol.data = data;
            if let (Some(l), Some(d)) = (label.as_mut(), label_data) {
                l.data = d;
            }
            i = end;
            continue;
        }
        if PointStep::of(&t[i], plan.seed, plan.variant, vol.dims).is_some() {
            let steps: Vec<PointStep> = t[i..]
                .iter()
                .map_while(|a| PointStep::of(a, plan.seed, plan.variant, vol.dims))
                .collect();
            i += steps.len();
            intensity::run_points(&mut vol, &steps);
            continue;
        }
        other(plan, &t[i], &mut vol, label.as_ref())?;
        i += 1;
    }
    Ok((vol, label))
}

/// One run of flips, affines and elastic fields, read from `vol` into new buffers: exact index
/// flips when that is all, otherwise one resampling of the image (and of the label map,
/// nearest).
fn spatial(
    plan: &Plan,
    run: &[Applied],
    vol: &Volume,
    label: Option<&Volume>,
) -> (Vec<f32>, Option<Vec<f32>>) {
    if run.iter().all(|a| matches!(a, Applied::Flip { .. })) {
        let mut axes = [false; 3];
        for a in run {
            if let Applied::Flip { axes: ax } = a {
                for &x in ax {
                    axes[x as usize] ^= true;
                }
            }
        }
        return (flipped(vol, axes), label.map(|l| flipped(l, axes)));
    }
    let (steps, interpolation, pad) = spatial_steps(plan, run, vol);
    let data = warp::resample(vol, &steps, interpolation, pad);
    let label = label.map(|l| warp::resample(l, &steps, Interpolation::Nearest, 0.0));
    (data, label)
}

/// The warp of a run of spatial transforms: its steps, the interpolation (linear if any step
/// asks for it) and the pad value (the first affine's, else the minimum).
pub fn spatial_steps(
    plan: &Plan,
    run: &[Applied],
    vol: &Volume,
) -> (Vec<Step>, Interpolation, f32) {
    let mut steps = Vec::with_capacity(run.len());
    let mut interpolation = Interpolation::Nearest;
    let mut pad: Option<PadValue> = None;
    for a in run {
        match a {
            Applied::Flip { axes } => steps.push(Step::Linear(warp::flip_map(vol, axes))),
            Applied::Affine {
                scales,
                degrees,
                translation,
                center,
                default_pad_value,
                interpolation: interp,
            } => {
                let c = warp::centre_of(vol, *center);
                steps.push(Step::Linear(warp::affine_map(
                    *scales,
                    *degrees,
                    *translation,
                    c,
                )));
                pad.get_or_insert(default_pad_value.clone());
                if *interp == Interpolation::Linear {
                    interpolation = Interpolation::Linear;
                }
            }
            Applied::Elastic {
                slot,
                num_control_points,
                max_displacement,
                locked_borders,
                interpolation: interp,
            } => {
                steps.push(Step::Elastic(ElasticField::draw(
                    plan.seed,
                    plan.variant,
                    *slot,
                    *num_control_points,
                    *max_displacement,
                    *locked_borders,
                    vol.is_2d(),
                )));
                if *interp == Interpolation::Linear {
                    interpolation = Interpolation::Linear;
                }
            }
            _ => unreachable!("only spatial transforms are fused"),
        }
    }
    let pad = warp::pad_value(vol, &pad.unwrap_or(PadValue::Named(PadName::Minimum)));
    (steps, interpolation, pad)
}
/// The voxels of `vol` with array axes flipped (exact; the grid and affine stay).
pub fn flipped(vol: &Volume, axes: [bool; 3]) -> Vec<f32> {
    let [ni, nj, nk] = vol.dims;
    let src = &vol.data;
    let mut out = crate::volume::zeroed(src.len());
    use rayon::prelude::*;
    out.par_chunks_mut(ni).enumerate().for_each(|(r, row)| {
        let (j, k) = (r % nj, r / nj);
        let sj = if axes[1] { nj - 1 - j } else { j };
        let sk = if axes[2] { nk - 1 - k } else { k };
        let s = &src[ni * (sj + nj * sk)..][..ni];
        if axes[0] {
            for (o, v) in row.iter_mut().zip(s.iter().rev()) {
                *o = *v;
            }
        } else {
            row.copy_from_slice(s);
        }
    });
    out
}

fn other(plan: &Plan, a: &Applied, vol: &mut Volume, label: Option<&Volume>) -> Result<()> {
    match a {
        Applied::Anisotropy { axis, downsampling } => resize::anisotropy(vol, *axis, *downsampling),
        Applied::Motion {
            degrees,
            translation,
            times,
            interpolation,
        } => kspace::motion(vol, degrees, translation, times, *interpolation),
        Applied::Ghosting {
            num_ghosts,
            axis,
            intensity,
            restore,
        } => kspace::ghosting(vol, *num_ghosts, *axis, *intensity, *restore),
        Applied::Spike {
            positions,
            intensity,
        } => kspace::spike(vol, positions, *intensity),
        Applied::Blur { std } => blur::blur(vol, *std),
        Applied::Swap { patch_size, pairs } => swap::swap(vol, *patch_size, pairs),
        Applied::Rescale {
            out_min_max,
            percentiles,
        } => intensity::rescale(vol, *out_min_max, *percentiles),
        Applied::ZNormalize { foreground_only } => intensity::z_normalize(vol, *foreground_only),
        Applied::LabelsToImage { classes, slot } => {
            let Some(l) = label else {
                bail!("labels_to_image needs a label map carried with the image");
            };
            let s = Stream::new(plan.seed, plan.variant, *slot, Purpose::Noise);
            intensity::labels_to_image(vol, l, classes, &s);
        }
        _ => unreachable!("spatial and point-wise transforms are handled by run"),
    }
    Ok(())
}
