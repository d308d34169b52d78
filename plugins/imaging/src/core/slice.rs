//! 2D slice extraction with a fixed display convention.
//!
//! # Display convention
//!
//! Slices are taken from a [`CanonicalView`], so the result does not depend on how
//! the volume is stored (RAS, LPS, PLS, ... all give identical images). The
//! default is the **neurological** convention (as in FSLeyes / nilearn):
//!
//! | plane    | image top | image bottom | image left   | image right   |
//! |----------|-----------|--------------|--------------|---------------|
//! | axial    | Anterior  | Posterior    | patient Left | patient Right |
//! | coronal  | Superior  | Inferior     | patient Left | patient Right |
//! | sagittal | Superior  | Inferior     | Posterior    | Anterior      |
//!
//! With [`SliceOptions::radiological`] set, axial and coronal images are mirrored
//! left/right (patient Right on the image left, as most radiology viewers show
//! them); sagittal images are unchanged.
//!
//! Slice indices are RAS-canonical along the plane normal: axial index 0 is the
//! most Inferior slice, coronal 0 the most Posterior, sagittal 0 the most Left.
//!
//! # Square pixels
//!
//! When the two in-plane voxel spacings differ, the slice is resampled with
//! bilinear interpolation (pixel-centre aligned, edges clamped) onto a grid with
//! the smaller spacing: each output dimension is `round(n * spacing / min_spacing)`.
//! Isotropic in-plane spacing gives an exact copy of the voxel values.
//!
//! # Near-empty slices
//!
//! [`EmptySliceRule`]: a pixel is *foreground* when its value is strictly greater
//! than `lo + relative_threshold * (hi - lo)` of the **volume** window (`lo, hi`),
//! NaN never counts. A slice is *near-empty* when the fraction of foreground pixels
//! is below `min_foreground`. The rule is evaluated on the native slice (before
//! resampling). With per-slice min–max windowing, pass the volume min–max window so
//! that a slice of pure background is still recognised.

use std::fmt;

use super::orient::CanonicalView;
use super::voxel::Voxel;
use super::window::Window;

/// Errors from slicing.
#[derive(Debug, Clone, PartialEq)]
pub enum SliceError {
    /// Slice index beyond the number of slices along the plane normal.
    IndexOutOfRange { index: usize, count: usize },
    /// Frame index beyond the number of frames.
    FrameOutOfRange { frame: usize, count: usize },
    /// A range selection with `step == 0`.
    ZeroStep,
    /// In-plane voxel sizes that are not finite and positive, or whose square-pixel
    /// resampling would make a slice side longer than [`MAX_RESAMPLED_SIDE`] pixels.
    AbsurdSpacing {
        plane: Plane,
        rows: usize,
        cols: usize,
        spacing_row: f64,
        spacing_col: f64,
    },
}

/// The longest side (pixels) square-pixel resampling may give a slice, unless the native
/// slice is already that long: anything beyond comes from an absurd voxel size, not a scan.
pub const MAX_RESAMPLED_SIDE: usize = 16384;

impl fmt::Display for SliceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SliceError::IndexOutOfRange { index, count } => {
                write!(f, "slice index {index} out of range (0..{count})")
            }
            SliceError::FrameOutOfRange { frame, count } => {
                write!(f, "frame {frame} out of range (0..{count})")
            }
            SliceError::ZeroStep => write!(f, "slice range step must be > 0"),
            SliceError::AbsurdSpacing {
                plane,
                rows,
                cols,
                spacing_row,
                spacing_col,
            } => write!(
                f,
                "absurd voxel size for {} slices of {rows} x {cols} pixels: spacing \
                 {spacing_row:.3e} x {spacing_col:.3e} mm (must be finite and positive, and \
                 square pixels at most {MAX_RESAMPLED_SIDE} pixels a side); check the \
                 affine / PixelSpacing / SliceThickness, or set square_pixels: false",
                plane.name()
            ),
        }
    }
}

impl std::error::Error for SliceError {}

/// Slicing plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plane {
    /// Normal along z (Inferior→Superior).
    Axial,
    /// Normal along y (Posterior→Anterior).
    Coronal,
    /// Normal along x (Left→Right).
    Sagittal,
}

/// How the plane's axes map to RAS axes: (normal, row axis, column axis).
struct PlaneAxes {
    normal: usize,
    row: usize,
    col: usize,
    col_reversed: bool,
}

impl Plane {
    /// All planes, in the order axial, coronal, sagittal.
    pub const ALL: [Plane; 3] = [Plane::Axial, Plane::Coronal, Plane::Sagittal];

    /// Lower-case name used in file names and manifests.
    pub fn name(self) -> &'static str {
        match self {
            Plane::Axial => "axial",
            Plane::Coronal => "coronal",
            Plane::Sagittal => "sagittal",
        }
    }

    /// Parses `axial`, `coronal` or `sagittal` (case-insensitive).
    pub fn parse(s: &str) -> Option<Plane> {
        match s.to_ascii_lowercase().as_str() {
            "axial" => Some(Plane::Axial),
            "coronal" => Some(Plane::Coronal),
            "sagittal" => Some(Plane::Sagittal),
            _ => None,
        }
    }

    fn axes(self, radiological: bool) -> PlaneAxes {
        // Rows always run from the positive end (Anterior / Superior) at the top.
        match self {
            Plane::Axial => PlaneAxes {
                normal: 2,
                row: 1,
                col: 0,
                col_reversed: radiological,
            },
            Plane::Coronal => PlaneAxes {
                normal: 1,
                row: 2,
                col: 0,
                col_reversed: radiological,
            },
            Plane::Sagittal => PlaneAxes {
                normal: 0,
                row: 2,
                col: 1,
                col_reversed: false,
            },
        }
    }

    /// Number of slices along this plane's normal.
    pub fn slice_count<T: Copy>(self, view: &CanonicalView<'_, T>) -> usize {
        view.shape()[self.axes(false).normal]
    }

    /// Native `(rows, cols)` of a slice (before square-pixel resampling).
    pub fn native_shape<T: Copy>(self, view: &CanonicalView<'_, T>) -> (usize, usize) {
        let a = self.axes(false);
        (view.shape()[a.row], view.shape()[a.col])
    }

    /// Native `(spacing_row, spacing_col)` in mm.
    pub fn native_spacing<T: Copy>(self, view: &CanonicalView<'_, T>) -> (f64, f64) {
        let a = self.axes(false);
        (view.spacing()[a.row], view.spacing()[a.col])
    }

    /// Output `(rows, cols, spacing_row, spacing_col)` after square-pixel resampling
    /// (identical to the native values when in-plane spacing is isotropic).
    pub fn output_geometry<T: Copy>(
        self,
        view: &CanonicalView<'_, T>,
    ) -> Result<(usize, usize, f64, f64), SliceError> {
        let (rows, cols) = self.native_shape(view);
        let (sr, sc) = self.native_spacing(view);
        square_pixel_geometry(rows, cols, sr, sc).ok_or(SliceError::AbsurdSpacing {
            plane: self,
            rows,
            cols,
            spacing_row: sr,
            spacing_col: sc,
        })
    }
}

/// Output geometry `(rows, cols, spacing_row, spacing_col)` for square pixels.
///
/// When `sr` and `sc` differ (relative difference > 1e-6), both axes are put on
/// the smaller spacing: `n' = max(1, round(n * s / min))`. The returned spacings
/// are the actual ones (`n * s / n'`), which equal `min` up to rounding of `n'`.
///
/// `None` when a spacing is not finite and positive, or when a resampled side would exceed
/// [`MAX_RESAMPLED_SIDE`] (and the native side): a voxel size of 1e30 mm beside 1 mm would
/// otherwise ask for a slice of 10^30 pixels.
pub fn square_pixel_geometry(
    rows: usize,
    cols: usize,
    sr: f64,
    sc: f64,
) -> Option<(usize, usize, f64, f64)> {
    if !(sr.is_finite() && sc.is_finite() && sr > 0.0 && sc > 0.0) {
        return None;
    }
    let m = sr.min(sc);
    if (sr - sc).abs() <= 1e-6 * sr.max(sc) {
        return Some((rows, cols, sr, sc));
    }
    let out = |n: usize, s: f64| {
        let side = (n as f64 * s / m).round().max(1.0);
        // Compared as f64: the cast saturates, so a huge side must be caught before it.
        (side <= MAX_RESAMPLED_SIDE.max(n) as f64).then_some(side as usize)
    };
    let (r2, c2) = (out(rows, sr)?, out(cols, sc)?);
    Some((
        r2,
        c2,
        rows as f64 * sr / r2 as f64,
        cols as f64 * sc / c2 as f64,
    ))
}

/// Options for [`extract_slice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceOptions {
    /// Mirror axial and coronal slices left/right (patient Right on image left).
    pub radiological: bool,
    /// Resample anisotropic in-plane spacing to square pixels (default true).
    pub square_pixels: bool,
}

impl Default for SliceOptions {
    fn default() -> Self {
        SliceOptions {
            radiological: false,
            square_pixels: true,
        }
    }
}

/// A 2D slice, row-major, row 0 at the top. `P` holds the pixels: f32 values from
/// [`extract_slice`], [`SlicePixels`] from [`extract_slice_typed`].
#[derive(Debug, Clone, PartialEq)]
pub struct Slice2D<P = Vec<f32>> {
    pub data: P,
    pub rows: usize,
    pub cols: usize,
    /// Pixel height in mm.
    pub spacing_row: f64,
    /// Pixel width in mm.
    pub spacing_col: f64,
    pub plane: Plane,
    /// RAS-canonical index along the plane normal.
    pub index: usize,
    pub frame: usize,
}

/// Copies the native slice (no resampling) into `out`, which must hold
/// `rows * cols` values (see [`Plane::native_shape`]).
///
/// Contiguous storage runs are copied with `copy_from_slice` (or a reversed copy);
/// other layouts use a strided gather that walks storage contiguously where it can.
pub fn extract_native_into<T: Copy>(
    view: &CanonicalView<'_, T>,
    plane: Plane,
    index: usize,
    frame: usize,
    radiological: bool,
    out: &mut [T],
) -> Result<(usize, usize), SliceError> {
    let a = plane.axes(radiological);
    let shape = view.shape();
    let strides = view.strides();
    if index >= shape[a.normal] {
        return Err(SliceError::IndexOutOfRange {
            index,
            count: shape[a.normal],
        });
    }
    if frame >= view.frames() {
        return Err(SliceError::FrameOutOfRange {
            frame,
            count: view.frames(),
        });
    }
    let (rows, cols) = (shape[a.row], shape[a.col]);
    assert_eq!(out.len(), rows * cols, "output buffer has the wrong size");
    let data = view.frame_data(frame);

    // Top-left pixel: row axis at its maximum, column axis at 0 (or max if reversed).
    let mut start = [0usize; 3];
    start[a.normal] = index;
    start[a.row] = rows - 1;
    start[a.col] = if a.col_reversed { cols - 1 } else { 0 };
    let base = view.offset(start) as isize;
    let rs = -strides[a.row];
    let cs = if a.col_reversed {
        -strides[a.col]
    } else {
        strides[a.col]
    };

    if cs == 1 || cs == -1 {
        for (r, orow) in out.chunks_exact_mut(cols).enumerate() {
            let rb = base + r as isize * rs;
            if cs == 1 {
                let s = rb as usize;
                orow.copy_from_slice(&data[s..s + cols]);
            } else {
                let s = (rb - (cols as isize - 1)) as usize;
                for (o, &v) in orow.iter_mut().zip(data[s..s + cols].iter().rev()) {
                    *o = v;
                }
            }
        }
    } else if rs == 1 || rs == -1 {
        // Storage runs along image columns: read them contiguously, write strided.
        for c in 0..cols {
            let cb = base + c as isize * cs;
            let s = if rs == 1 {
                cb as usize
            } else {
                (cb - (rows as isize - 1)) as usize
            };
            let run = &data[s..s + rows];
            if rs == 1 {
                for (r, &v) in run.iter().enumerate() {
                    out[r * cols + c] = v;
                }
            } else {
                for (r, &v) in run.iter().rev().enumerate() {
                    out[r * cols + c] = v;
                }
            }
        }
    } else {
        for (r, orow) in out.chunks_exact_mut(cols).enumerate() {
            let rb = base + r as isize * rs;
            for (c, o) in orow.iter_mut().enumerate() {
                *o = data[(rb + c as isize * cs) as usize];
            }
        }
    }
    Ok((rows, cols))
}

/// The pixels of a slice: the volume's own values when they were copied, f32 when
/// square-pixel resampling interpolated new ones.
#[derive(Debug, Clone, PartialEq)]
pub enum SlicePixels<T> {
    Native(Vec<T>),
    Resampled(Vec<f32>),
}

impl<T: Voxel> SlicePixels<T> {
    /// The pixels as f32.
    pub fn into_f32(self) -> Vec<f32> {
        match self {
            SlicePixels::Native(v) => v.into_iter().map(Voxel::to_f32).collect(),
            SlicePixels::Resampled(v) => v,
        }
    }
}

/// Extracts one slice with the display convention and optional square-pixel resampling, as
/// f32 values.
pub fn extract_slice<T: Voxel>(
    view: &CanonicalView<'_, T>,
    plane: Plane,
    index: usize,
    frame: usize,
    opts: &SliceOptions,
) -> Result<Slice2D, SliceError> {
    let s = extract_slice_typed(view, plane, index, frame, opts)?;
    Ok(Slice2D {
        data: s.data.into_f32(),
        rows: s.rows,
        cols: s.cols,
        spacing_row: s.spacing_row,
        spacing_col: s.spacing_col,
        plane: s.plane,
        index: s.index,
        frame: s.frame,
    })
}

/// Like [`extract_slice`], keeping the volume's dtype unless resampling interpolates: a slice
/// of a uint8 volume is a quarter of its f32 form, and no float copy of the volume is needed.
pub fn extract_slice_typed<T: Voxel>(
    view: &CanonicalView<'_, T>,
    plane: Plane,
    index: usize,
    frame: usize,
    opts: &SliceOptions,
) -> Result<Slice2D<SlicePixels<T>>, SliceError> {
    let (rows, cols) = plane.native_shape(view);
    // Checked before the native slice is cut, so an absurd spacing costs nothing.
    let (r2, c2, sr2, sc2) = if opts.square_pixels {
        plane.output_geometry(view)?
    } else {
        let (sr, sc) = plane.native_spacing(view);
        (rows, cols, sr, sc)
    };
    // Every element is overwritten by extract_native_into.
    let mut native = vec![view.data()[0]; rows * cols];
    extract_native_into(view, plane, index, frame, opts.radiological, &mut native)?;
    let data = if (r2, c2) == (rows, cols) {
        SlicePixels::Native(native)
    } else {
        let f: Vec<f32> = native.into_iter().map(Voxel::to_f32).collect();
        SlicePixels::Resampled(resample_bilinear(&f, rows, cols, r2, c2))
    };
    Ok(Slice2D {
        data,
        rows: r2,
        cols: c2,
        spacing_row: sr2,
        spacing_col: sc2,
        plane,
        index,
        frame,
    })
}

/// Sampling table for one axis: (lower index, upper index, weight of upper).
fn axis_table(n_src: usize, n_dst: usize) -> Vec<(usize, usize, f32)> {
    let scale = n_src as f64 / n_dst as f64;
    (0..n_dst)
        .map(|d| {
            let s = ((d as f64 + 0.5) * scale - 0.5).clamp(0.0, (n_src - 1) as f64);
            let i0 = s.floor() as usize;
            let i1 = (i0 + 1).min(n_src - 1);
            (i0, i1, (s - i0 as f64) as f32)
        })
        .collect()
}

/// Bilinear resampling of a row-major image (pixel-centre aligned, edges clamped).
///
/// Separable: a vertical blend of two source rows into one scratch row, then a
/// horizontal pass; an axis whose size does not change is copied exactly.
pub fn resample_bilinear(
    src: &[f32],
    rows: usize,
    cols: usize,
    out_rows: usize,
    out_cols: usize,
) -> Vec<f32> {
    assert_eq!(src.len(), rows * cols);
    let rt = axis_table(rows, out_rows);
    let ct = axis_table(cols, out_cols);
    let same_cols = out_cols == cols;
    let mut out = vec![0.0f32; out_rows * out_cols];
    let mut tmp = vec![0.0f32; cols];
    for (orow, &(r0, r1, fy)) in out.chunks_exact_mut(out_cols).zip(rt.iter()) {
        let a = &src[r0 * cols..(r0 + 1) * cols];
        if fy == 0.0 {
            tmp.copy_from_slice(a);
        } else {
            let b = &src[r1 * cols..(r1 + 1) * cols];
            for ((t, &x), &y) in tmp.iter_mut().zip(a).zip(b) {
                *t = x + (y - x) * fy;
            }
        }
        if same_cols {
            orow.copy_from_slice(&tmp);
        } else {
            for (o, &(c0, c1, fx)) in orow.iter_mut().zip(ct.iter()) {
                let x = tmp[c0];
                *o = if fx == 0.0 { x } else { x + (tmp[c1] - x) * fx };
            }
        }
    }
    out
}

/// Which slices to take along the plane normal (RAS-canonical indices).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SliceSelection {
    /// Every slice.
    All,
    /// The middle slice, index `n / 2`.
    Middle,
    /// Explicit indices, kept in the given order; each must be `< n`.
    Indices(Vec<usize>),
    /// `start, start + step, ...` while `< stop` (`stop` is clamped to `n`).
    Range {
        start: usize,
        stop: usize,
        step: usize,
    },
}

impl SliceSelection {
    /// Resolves the selection for `n` slices.
    pub fn resolve(&self, n: usize) -> Result<Vec<usize>, SliceError> {
        match self {
            SliceSelection::All => Ok((0..n).collect()),
            SliceSelection::Middle => Ok(if n == 0 { vec![] } else { vec![n / 2] }),
            SliceSelection::Indices(v) => {
                if let Some(&bad) = v.iter().find(|&&i| i >= n) {
                    return Err(SliceError::IndexOutOfRange {
                        index: bad,
                        count: n,
                    });
                }
                Ok(v.clone())
            }
            SliceSelection::Range { start, stop, step } => {
                if *step == 0 {
                    return Err(SliceError::ZeroStep);
                }
                Ok((*start..(*stop).min(n)).step_by(*step).collect())
            }
        }
    }
}

/// Which frames of a 4D volume to slice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameSelection {
    All,
    Indices(Vec<usize>),
}

impl FrameSelection {
    /// Resolves the selection for `nt` frames.
    pub fn resolve(&self, nt: usize) -> Result<Vec<usize>, SliceError> {
        match self {
            FrameSelection::All => Ok((0..nt).collect()),
            FrameSelection::Indices(v) => {
                if let Some(&bad) = v.iter().find(|&&t| t >= nt) {
                    return Err(SliceError::FrameOutOfRange {
                        frame: bad,
                        count: nt,
                    });
                }
                Ok(v.clone())
            }
        }
    }
}

/// Rule for skipping near-empty slices (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmptySliceRule {
    /// Minimum fraction of foreground pixels to keep a slice, e.g. 0.01.
    pub min_foreground: f64,
    /// Foreground threshold as a fraction of the window width above `lo`, e.g. 0.05.
    pub relative_threshold: f32,
}

impl Default for EmptySliceRule {
    fn default() -> Self {
        EmptySliceRule {
            min_foreground: 0.01,
            relative_threshold: 0.05,
        }
    }
}

impl EmptySliceRule {
    /// Absolute intensity threshold for the volume window.
    pub fn threshold(&self, window: Window) -> f32 {
        let w = (window.hi - window.lo).max(0.0);
        (window.lo + self.relative_threshold as f64 * w) as f32
    }

    /// Whether `img` is near-empty under this rule.
    pub fn is_near_empty<T: Voxel>(&self, img: &[T], window: Window) -> bool {
        is_near_empty(img, self.threshold(window), self.min_foreground)
    }
}

/// Fraction of pixels strictly above `threshold` (NaN never counts); 0 for an empty image.
pub fn foreground_fraction<T: Voxel>(img: &[T], threshold: f32) -> f64 {
    if img.is_empty() {
        return 0.0;
    }
    let n: usize = img.iter().map(|&v| (v.to_f32() > threshold) as usize).sum();
    n as f64 / img.len() as f64
}

/// `true` when fewer than `min_foreground` of the pixels are above `threshold`.
pub fn is_near_empty<T: Voxel>(img: &[T], threshold: f32, min_foreground: f64) -> bool {
    foreground_fraction(img, threshold) < min_foreground
}
