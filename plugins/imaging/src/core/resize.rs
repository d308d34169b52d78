//! Fitting a 2D image to a fixed size (a model's input), with the numbers PyTorch gives.
//!
//! # Geometry
//!
//! A [`ResizePlan`] scales the `from` image to `scaled` pixels and places its top-left corner
//! at `offset` in the `to` canvas (a negative offset crops). The modes:
//!
//! * `fit`: one scale for both axes so the whole image fits (`min(R/r, C/c)`), then centred
//!   padding;
//! * `pad`: no scaling; centred padding, or centred cropping where the image is larger;
//! * `crop`: one scale so the image covers the canvas (`max(R/r, C/c)`), then a centred crop.
//!
//! Scaled sizes are `round(n * s)`; centring puts the odd pixel of padding or cropping at the
//! bottom / right (`offset = (to - scaled) / 2`, truncated toward zero). The mapping back to the
//! source, in pixel-edge coordinates, is `y_src = (y_out - offset) / scale` with
//! `scale = scaled / from` per axis; for pixel centres, `src = (dst - offset + 0.5) / scale - 0.5`.
//!
//! # Sampling (PyTorch's `F.interpolate(x, size=scaled, ...)` on the scaled image)
//!
//! With `s = from / scaled` per axis (float32, as torch computes it):
//!
//! * `linear`: `mode="bilinear", align_corners=False`: `src = (dst + 0.5) * s - 0.5`, clamped
//!   at 0; taps `floor(src)` and the next one (clamped to the last pixel), weights
//!   `1 - λ, λ`. No antialiasing: downscaling by more than 2 skips pixels, use `area`.
//! * `nearest`: `mode="nearest-exact"`: `min(floor((dst + 0.5) * s), n - 1)` (torch's legacy
//!   `"nearest"`, `floor(dst * s)`, shifts the image by up to half a pixel).
//! * `area`: `mode="area"` (adaptive average pooling): output pixel `i` averages source pixels
//!   `floor(i * n / m)` to `ceil((i + 1) * n / m)` (exclusive) on each axis.

use super::voxel::Voxel;

/// How the image meets the output size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    Fit,
    Pad,
    Crop,
}

/// How scaled pixels are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Linear,
    Nearest,
    Area,
}

/// Where the source image lands in the output (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResizePlan {
    /// Source `[rows, cols]`.
    pub from: [usize; 2],
    /// Output `[rows, cols]`.
    pub to: [usize; 2],
    /// The source's size once scaled.
    pub scaled: [usize; 2],
    /// `scaled / from` per axis: output pixels per source pixel.
    pub scale: [f64; 2],
    /// Output position of the scaled image's top-left corner (negative: cropped).
    pub offset: [i64; 2],
}

impl ResizePlan {
    /// The plan for `from` → `to`; both sizes must be non-zero.
    pub fn new(from: [usize; 2], to: [usize; 2], mode: ResizeMode) -> Result<ResizePlan, String> {
        if from.contains(&0) || to.contains(&0) {
            return Err(format!("cannot resize {from:?} to {to:?}: empty image"));
        }
        let ratio = |a: usize| to[a] as f64 / from[a] as f64;
        let scaled = match mode {
            ResizeMode::Pad => from,
            ResizeMode::Fit => {
                let s = ratio(0).min(ratio(1));
                [0, 1].map(|a| ((from[a] as f64 * s).round() as usize).clamp(1, to[a]))
            }
            ResizeMode::Crop => {
                let s = ratio(0).max(ratio(1));
                [0, 1].map(|a| ((from[a] as f64 * s).round() as usize).max(to[a]))
            }
        };
        Ok(ResizePlan {
            from,
            to,
            scaled,
            scale: [0, 1].map(|a| scaled[a] as f64 / from[a] as f64),
            offset: [0, 1].map(|a| (to[a] as i64 - scaled[a] as i64) / 2),
        })
    }

    /// The source position (pixel centres at integers) of output pixel centre `(row, col)`.
    pub fn to_source(&self, row: f64, col: f64) -> [f64; 2] {
        let dst = [row, col];
        [0, 1].map(|a| (dst[a] - self.offset[a] as f64 + 0.5) / self.scale[a] - 0.5)
    }

    /// The output rows (axis 0) or columns (axis 1) the scaled image covers, with each one's
    /// index in the scaled image.
    fn covered(&self, axis: usize) -> impl Iterator<Item = (usize, usize)> + use<> {
        let (off, n, to) = (
            self.offset[axis],
            self.scaled[axis] as i64,
            self.to[axis] as i64,
        );
        (off.max(0)..(off + n).min(to)).map(move |o| (o as usize, (o - off) as usize))
    }
}

/// A pixel type whose values a pad value can be given in.
pub trait Pixel: Voxel + PartialOrd {
    /// `v` in this type (`as`: saturating, truncating toward zero for integers).
    fn from_f64(v: f64) -> Self;
}

macro_rules! pixel {
    ($($t:ty),*) => { $(impl Pixel for $t {
        fn from_f64(v: f64) -> Self { v as $t }
    })* };
}
pixel!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

/// The smallest value of `px` (NaN ignored); `None` when there is none.
pub fn min_value<T: Pixel>(px: &[T]) -> Option<T> {
    px.iter()
        .copied()
        // NaN is the only value unequal to itself.
        .filter(|v| v.partial_cmp(v).is_some())
        .fold(None, |m, v| match m {
            Some(m) if m <= v => Some(m),
            _ => Some(v),
        })
}

/// Nearest-neighbour resize (and `pad`, where it is the identity), in the pixels' own type.
pub fn resize_nearest<T: Copy>(src: &[T], plan: &ResizePlan, pad: T) -> Vec<T> {
    assert_eq!(src.len(), plan.from[0] * plan.from[1]);
    let [rows, cols] = plan.to;
    let index = |a: usize, i: usize| {
        let s = plan.from[a] as f32 / plan.scaled[a] as f32;
        (((i as f32 + 0.5) * s).floor() as usize).min(plan.from[a] - 1)
    };
    let col_map: Vec<(usize, usize)> = plan.covered(1).map(|(o, i)| (o, index(1, i))).collect();
    let mut out = vec![pad; rows * cols];
    for (orow, i) in plan.covered(0) {
        let srow = &src[index(0, i) * plan.from[1]..][..plan.from[1]];
        let dst = &mut out[orow * cols..][..cols];
        for &(oc, sc) in &col_map {
            dst[oc] = srow[sc];
        }
    }
    out
}

/// Linear taps of one output index: `(i0, i1, w0, w1)`, torch's `align_corners=False`.
fn linear_taps(n_in: usize, n_out: usize, i: usize) -> (usize, usize, f32, f32) {
    let s = n_in as f32 / n_out as f32;
    let src = ((i as f32 + 0.5) * s - 0.5).max(0.0);
    let i0 = (src as usize).min(n_in - 1);
    let i1 = (i0 + 1).min(n_in - 1);
    let l1 = src - i0 as f32;
    (i0, i1, 1.0 - l1, l1)
}

/// Bilinear resize to float32 (see the module docs for the formula).
pub fn resize_linear<T: Voxel>(src: &[T], plan: &ResizePlan, pad: f32) -> Vec<f32> {
    assert_eq!(src.len(), plan.from[0] * plan.from[1]);
    let [rows, cols] = plan.to;
    let w = plan.from[1];
    let px = |i: usize| src[i].to_f32();
    let col_taps: Vec<(usize, (usize, usize, f32, f32))> = plan
        .covered(1)
        .map(|(o, i)| (o, linear_taps(plan.from[1], plan.scaled[1], i)))
        .collect();
    let mut out = vec![pad; rows * cols];
    for (orow, i) in plan.covered(0) {
        let (r0, r1, h0, h1) = linear_taps(plan.from[0], plan.scaled[0], i);
        let dst = &mut out[orow * cols..][..cols];
        for &(oc, (c0, c1, w0, w1)) in &col_taps {
            let top = w0 * px(r0 * w + c0) + w1 * px(r0 * w + c1);
            let bottom = w0 * px(r1 * w + c0) + w1 * px(r1 * w + c1);
            dst[oc] = h0 * top + h1 * bottom;
        }
    }
    out
}

/// The source span `[start, end)` that output index `i` of `n_out` averages (adaptive pooling).
fn area_span(n_in: usize, n_out: usize, i: usize) -> (usize, usize) {
    (i * n_in / n_out, ((i + 1) * n_in).div_ceil(n_out))
}

/// Area (box-average) resize to float32: torch's `mode="area"`.
pub fn resize_area<T: Voxel>(src: &[T], plan: &ResizePlan, pad: f32) -> Vec<f32> {
    assert_eq!(src.len(), plan.from[0] * plan.from[1]);
    let [rows, cols] = plan.to;
    let w = plan.from[1];
    let col_spans: Vec<(usize, (usize, usize))> = plan
        .covered(1)
        .map(|(o, i)| (o, area_span(plan.from[1], plan.scaled[1], i)))
        .collect();
    let mut out = vec![pad; rows * cols];
    for (orow, i) in plan.covered(0) {
        let (r0, r1) = area_span(plan.from[0], plan.scaled[0], i);
        let dst = &mut out[orow * cols..][..cols];
        for &(oc, (c0, c1)) in &col_spans {
            let mut sum = 0.0f32;
            for r in r0..r1 {
                for v in &src[r * w + c0..r * w + c1] {
                    sum += v.to_f32();
                }
            }
            // As torch: the sum divided by the window's height, then by its width.
            dst[oc] = sum / (r1 - r0) as f32 / (c1 - c0) as f32;
        }
    }
    out
}

/// Resize with `interp` to float32 (`nearest` converts its picks).
pub fn resize_f32<T: Voxel>(
    src: &[T],
    plan: &ResizePlan,
    interp: Interpolation,
    pad: f32,
) -> Vec<f32> {
    match interp {
        Interpolation::Linear => resize_linear(src, plan, pad),
        Interpolation::Area => resize_area(src, plan, pad),
        Interpolation::Nearest => {
            let f: Vec<f32> = src.iter().map(|v| v.to_f32()).collect();
            resize_nearest(&f, plan, pad)
        }
    }
}
