//! Running a plan on a GPU: the volume is uploaded once, every spatial run is one `warp`
//! launch and every point-wise run one `points` launch, and it comes back once. The kernels
//! (`kernels/*.cu`) are twins of `exec::warp::resample` and `exec::intensity::run_points`.
//! Transforms without a kernel yet (k-space, blur, swap, resize, statistics) run the whole plan
//! on the CPU: [`unsupported`] says which.

use std::sync::Arc;

use anyhow::{Result, bail};
use mindscan_cuda::{CudaSlice, CudaStream, Gpu, LaunchConfig, PushKernelArg};

use crate::exec::intensity::PointStep;
use crate::exec::spatial_steps;
use crate::exec::warp::{VoxelStep, voxel_steps};
use crate::plan::{Applied, Plan};
use crate::spec::{Interpolation, PadValue};
use crate::volume::Volume;

/// `kernels/points.cu` after the Philox header it uses.
pub const POINTS_SOURCE: &str = concat!(
    include_str!("../../random/kernels/philox.cuh"),
    include_str!("kernels/points.cu")
);
pub const POINTS_NAME: &str = "points.cu";
pub const WARP_SOURCE: &str = include_str!("kernels/warp.cu");
pub const WARP_NAME: &str = "warp.cu";

/// Every kernel of this crate: (file name, source, entry point).
pub const KERNELS: &[(&str, &str, &str)] = &[
    (POINTS_NAME, POINTS_SOURCE, "points"),
    (WARP_NAME, WARP_SOURCE, "warp"),
];

/// The first transform of `plan` the GPU cannot run, if any.
pub fn unsupported(plan: &Plan) -> Option<&'static str> {
    let mut after_points = false;
    for t in &plan.transforms {
        match t {
            Applied::Gamma { .. } | Applied::Noise { .. } | Applied::BiasField { .. } => {
                after_points = true
            }
            Applied::Affine {
                default_pad_value: PadValue::Named(_),
                ..
            }
            | Applied::Elastic { .. }
                if after_points =>
            {
                // The pad value is a statistic of the volume at that point: not on the GPU yet.
                return Some("a named pad value after an intensity step");
            }
            t if t.is_spatial() => {}
            t => return Some(t.name()),
        }
    }
    None
}

/// Runs `plan` on `gpu` (see [`unsupported`] first). The pad values are taken from the input
/// on the host, which [`unsupported`] guarantees is the volume they are defined on.
pub fn run(
    gpu: &Arc<Gpu>,
    stream: &Arc<CudaStream>,
    plan: &Plan,
    vol: &Volume,
    label: Option<&Volume>,
) -> Result<(Volume, Option<Volume>)> {
    if let Some(what) = unsupported(plan) {
        bail!("the GPU cannot run {what} yet");
    }
    let n = vol.len();
    let dims = vol.dims.map(|d| d as u32);
    let mut cur = stream.clone_htod(&vol.data)?;
    let mut lab = match &label {
        Some(l) => Some(stream.clone_htod(&l.data)?),
        None => None,
    };
    let t = &plan.transforms;
    let mut i = 0;
    while i < t.len() {
        if t[i].is_spatial() {
            let end = i + t[i..].iter().take_while(|a| a.is_spatial()).count();
            let run = &t[i..end];
            let flips_only = run.iter().all(|a| matches!(a, Applied::Flip { .. }));
            let (steps, interpolation, pad) = spatial_steps(plan, run, vol);
            let (words, coef) = encode_warp(&voxel_steps(vol, &steps));
            // Flips alone sample exact integer coordinates: nearest makes them bit-exact.
            let nearest = flips_only || interpolation == Interpolation::Nearest;
            cur = warp(gpu, stream, &cur, dims, &words, &coef, nearest, pad)?;
            if let Some(l) = lab.take() {
                lab = Some(warp(gpu, stream, &l, dims, &words, &coef, true, 0.0)?);
            }
            i = end;
        } else {
            let steps: Vec<PointStep> = t[i..]
                .iter()
                .map_while(|a| PointStep::of(a, plan.seed, plan.variant, vol.dims))
                .collect();
            i += steps.len();
            points(gpu, stream, &mut cur, dims, &encode_points(&steps))?;
        }
    }
    let out = Volume {
        data: stream.clone_dtoh(&cur)?,
        ..vol.clone_empty()
    };
    debug_assert_eq!(out.data.len(), n);
    let label = match (label, lab) {
        (Some(l), Some(d)) => Some(Volume {
            data: stream.clone_dtoh(&d)?,
            ..l.clone_empty()
        }),
        _ => None,
    };
    Ok((out, label))
}

/// Warp steps as `kernels/warp.cu` reads them, and the elastic coefficients they point into.
fn encode_warp(steps: &[VoxelStep]) -> (Vec<f32>, Vec<f32>) {
    let mut words = Vec::new();
    let mut coef = Vec::new();
    for s in steps {
        match s {
            VoxelStep::Linear(m) => {
                words.push(0.0);
                words.extend(m.iter().flatten());
            }
            VoxelStep::Elastic(f) => {
                words.push(1.0);
                words.extend(f.n.map(|n| n as f32));
                words.extend(f.scale);
                words.push(coef.len() as f32);
                coef.extend(f.coef.iter().flatten());
            }
        }
    }
    if coef.is_empty() {
        coef.push(0.0); // never read; a zero-length device buffer is not allowed
    }
    (words, coef)
}

/// Point steps as `kernels/points.cu` reads them.
fn encode_points(steps: &[PointStep]) -> Vec<f64> {
    let mut w = Vec::new();
    for s in steps {
        match s {
            PointStep::Gamma(g) => w.extend([0.0, *g as f64]),
            PointStep::Noise { a, b, mean, std } => w.extend([
                1.0,
                *mean as f64,
                *std as f64,
                b.is_some() as u8 as f64,
                a.key[0] as f64,
                a.key[1] as f64,
                a.variant as f64,
                a.tag as f64,
                b.map_or(0.0, |b| b.tag as f64),
            ]),
            PointStep::Bias(f) => {
                w.extend([2.0, 0.0, f.terms.len() as f64]);
                for &(x, y, z, c) in &f.terms {
                    w.extend([x as f64, y as f64, z as f64, c]);
                }
            }
        }
    }
    w
}

fn launch_config(n: usize) -> Result<LaunchConfig> {
    Ok(LaunchConfig::for_num_elems(u32::try_from(n)?))
}

#[allow(clippy::too_many_arguments)]
fn warp(
    gpu: &Arc<Gpu>,
    stream: &Arc<CudaStream>,
    src: &CudaSlice<f32>,
    dims: [u32; 3],
    words: &[f32],
    coef: &[f32],
    nearest: bool,
    pad: f32,
) -> Result<CudaSlice<f32>> {
    let n = src.len();
    let f = gpu.function(WARP_NAME, WARP_SOURCE, "warp")?;
    let words_d = stream.clone_htod(words)?;
    let coef_d = stream.clone_htod(coef)?;
    let mut out = gpu.take::<f32>(stream, n)?;
    let n_words = words.len() as u32;
    let nearest = nearest as i32;
    let mut l = stream.launch_builder(&f);
    l.arg(&mut out)
        .arg(src)
        .arg(&dims[0])
        .arg(&dims[1])
        .arg(&dims[2])
        .arg(&words_d)
        .arg(&n_words)
        .arg(&coef_d)
        .arg(&nearest)
        .arg(&pad);
    // SAFETY: the arguments follow warp.cu's signature in order and type; the step words and
    // coefficient offsets were encoded by encode_warp for this volume's dims; one thread per
    // voxel, bounds-checked in the kernel.
    unsafe { l.launch(launch_config(n)?) }?;
    Ok(out)
}

fn points(
    gpu: &Arc<Gpu>,
    stream: &Arc<CudaStream>,
    data: &mut CudaSlice<f32>,
    dims: [u32; 3],
    words: &[f64],
) -> Result<()> {
    let n = data.len();
    let f = gpu.function(POINTS_NAME, POINTS_SOURCE, "points")?;
    let words_d = stream.clone_htod(words)?;
    let n_words = words.len() as u32;
    let mut l = stream.launch_builder(&f);
    l.arg(data)
        .arg(&dims[0])
        .arg(&dims[1])
        .arg(&dims[2])
        .arg(&words_d)
        .arg(&n_words);
    // SAFETY: the arguments follow points.cu's signature; the words were encoded by
    // encode_points; one thread per voxel, bounds-checked in the kernel.
    unsafe { l.launch(launch_config(n)?) }?;
    Ok(())
}
