//! Pipeline stages over the pure [`crate::core`] functions: `intensity.window`, `volume.slice`,
//! `image.resize` (in [`resize`]) and `image.write`.

pub mod resize;

pub use resize::ImageResize;

use std::collections::HashMap;
use std::sync::Mutex;

use mindscan_sdk::naming::sanitize_component;
use mindscan_sdk::prelude::*;
use mindscan_storage::Destination;

use crate::core::{
    CanonicalView, ContactSheetTile, EmptySliceRule, FrameSelection, ManifestFormat, ManifestRow,
    ManifestWriter, NameFields, NameTemplate, Plane, Slice2D, SliceOptions, SlicePixels,
    SliceSelection, Voxel, Voxels, Window, WindowSpec, contact_sheet_png, encode_jpeg,
    encode_jpeg_rgb, encode_png_rgb, encode_png_u8, encode_png_u16, extract_slice_typed, file_stem,
    relative_path, write_atomic,
};
use crate::histogram::integer_percentile_window;

// ---------------------------------------------------------------- intensity.window

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum WindowMode {
    /// Percentiles `low`..`high` over the whole volume (numpy's linear interpolation).
    Percentile,
    /// `center` ± `width`/2.
    Fixed,
    /// Minimum and maximum of the whole volume.
    Minmax,
    /// Minimum and maximum of every slice (what med2image does).
    SliceMinmax,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowParams {
    #[serde(default = "default_mode")]
    pub mode: WindowMode,
    /// Lower percentile (mode percentile).
    #[serde(default = "default_low")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub low: f64,
    /// Upper percentile (mode percentile).
    #[serde(default = "default_high")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub high: f64,
    /// Window centre (mode fixed).
    pub center: Option<f64>,
    /// Window width (mode fixed).
    pub width: Option<f64>,
}

fn default_mode() -> WindowMode {
    WindowMode::Percentile
}
fn default_low() -> f64 {
    0.5
}
fn default_high() -> f64 {
    99.5
}

/// Chooses the intensity window of each volume (or image) and records it in the metadata
/// (`window: {lo, hi, mode}`); voxels pass through untouched (no copy).
pub struct IntensityWindow {
    spec: WindowSpec,
}

impl Stage for IntensityWindow {
    type Params = WindowParams;
    const NAME: &'static str = "intensity.window";
    const ROLE: Role = Role::Transform;
    const INPUTS: &'static [&'static str] = &[kinds::VOLUME, kinds::IMAGE];
    const OUTPUTS: &'static [&'static str] = &["same"];
    const DESCRIPTION: &'static str =
        "Choose the display window: percentiles, fixed centre/width, volume or per-slice min-max";

    fn new(p: WindowParams, _host: &Host) -> Result<Self> {
        let spec = match p.mode {
            WindowMode::Percentile => {
                if p.low >= p.high {
                    bail!("low ({}) must be below high ({})", p.low, p.high);
                }
                WindowSpec::Percentile {
                    lo: p.low,
                    hi: p.high,
                }
            }
            WindowMode::Fixed => {
                let (Some(center), Some(width)) = (p.center, p.width) else {
                    bail!("mode fixed needs `center` and `width`");
                };
                if width <= 0.0 {
                    bail!("width must be positive");
                }
                WindowSpec::CenterWidth { center, width }
            }
            WindowMode::Minmax => WindowSpec::MinMax,
            WindowMode::SliceMinmax => WindowSpec::SliceMinMax,
        };
        Ok(IntensityWindow { spec })
    }

    fn process(&self, _ctx: &Context, mut item: Item, out: &mut Emitter) -> Result<()> {
        if item.meta.get::<usize>("channels").unwrap_or(1) > 1 {
            // Colour volumes are shown as stored: no intensity window.
            item.meta
                .set(keys::WINDOW, serde_json::json!({ "mode": "colour" }));
            return out.emit(item);
        }
        let window = match self.spec {
            WindowSpec::SliceMinMax => None,
            WindowSpec::CenterWidth { center, width } => Some(Window::center_width(center, width)),
            WindowSpec::Percentile { lo, hi } => {
                match integer_percentile_window(item.data()?, lo, hi)? {
                    Some(w) => Some(w),
                    None => self.float_window(item.data()?)?,
                }
            }
            WindowSpec::MinMax => voxels(item.data()?)?.min_max(),
        };
        let mode = match self.spec {
            WindowSpec::Percentile { .. } => "percentile",
            WindowSpec::CenterWidth { .. } => "fixed",
            WindowSpec::MinMax => "minmax",
            WindowSpec::SliceMinMax => "slice_minmax",
        };
        let mut record = serde_json::json!({ "mode": mode });
        if let Some(w) = window {
            record["lo"] = w.lo.into();
            record["hi"] = w.hi.into();
        }
        item.meta.set(keys::WINDOW, record);
        out.emit(item)
    }
}

impl IntensityWindow {
    /// Window of a volume that is not 8/16-bit integer (float32 data is read in place).
    fn float_window(&self, t: &Tensor) -> Result<Option<Window>> {
        Ok(match t.dtype() {
            DType::F32 => self.spec.volume_window(t.as_slice::<f32>()?),
            _ => self.spec.volume_window(&t.to_f32_vec()?),
        })
    }
}

/// The window recorded by `intensity.window`, if any: `(Some(window), slice_minmax)`.
fn recorded_window(meta: &Meta) -> (Option<Window>, bool) {
    let Some(w) = meta.0.get(keys::WINDOW) else {
        return (None, false);
    };
    let per_slice = w.get("mode").and_then(|m| m.as_str()) == Some("slice_minmax");
    let lo = w.get("lo").and_then(|v| v.as_f64());
    let hi = w.get("hi").and_then(|v| v.as_f64());
    match (lo, hi) {
        (Some(lo), Some(hi)) => (Some(Window { lo, hi }), per_slice),
        _ => (None, per_slice),
    }
}

// ---------------------------------------------------------------- volume.slice

#[derive(Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PlaneName {
    Axial,
    Coronal,
    Sagittal,
    /// The three planes.
    All,
}

#[derive(Deserialize, JsonSchema, Clone, Debug)]
#[serde(untagged)]
pub enum PlaneParam {
    One(PlaneName),
    /// Several planes.
    Many(Vec<PlaneName>),
}

#[derive(Deserialize, JsonSchema, Clone, Debug)]
#[serde(untagged)]
pub enum SlicesParam {
    /// `all` or `middle`.
    Named(String),
    /// Explicit indices (RAS order along the plane normal: axial 0 = most inferior).
    List(Vec<usize>),
    /// `start`, `start + step`, ... while below `stop`.
    Range {
        start: usize,
        stop: usize,
        #[serde(default = "one")]
        step: usize,
    },
}

fn one() -> usize {
    1
}

#[derive(Deserialize, JsonSchema, Clone, Debug)]
#[serde(untagged)]
pub enum FramesParam {
    /// `all`.
    Named(String),
    List(Vec<usize>),
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SliceParams {
    #[serde(default = "default_plane")]
    pub plane: PlaneParam,
    #[serde(default = "default_slices")]
    pub slices: SlicesParam,
    /// Frames of 4D volumes (`all` or a list).
    #[serde(default = "default_frames")]
    pub frames: FramesParam,
    /// Skip slices with less than `min_foreground` of their pixels above 5% of the window.
    #[serde(default)]
    pub skip_empty: bool,
    #[serde(default = "default_min_fg")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_foreground: f64,
    /// Mirror left/right in axial and coronal slices (patient right on the image left).
    #[serde(default)]
    pub radiological: bool,
    /// Resample anisotropic in-plane voxels to square pixels.
    #[serde(default = "yes")]
    pub square_pixels: bool,
}

fn default_plane() -> PlaneParam {
    PlaneParam::One(PlaneName::Axial)
}
fn default_slices() -> SlicesParam {
    SlicesParam::Named("all".into())
}
fn default_frames() -> FramesParam {
    FramesParam::Named("all".into())
}
fn default_min_fg() -> f64 {
    0.01
}
fn yes() -> bool {
    true
}

/// Cuts volumes into 2D images in RAS-canonical orientation (see the display convention in
/// [`crate::core::slice`]).
pub struct VolumeSlice {
    planes: Vec<Plane>,
    slices: SliceSelection,
    frames: FrameSelection,
    empty: Option<EmptySliceRule>,
    opts: SliceOptions,
}

fn parse_plane_list(p: &PlaneParam) -> Vec<Plane> {
    let names: Vec<PlaneName> = match p {
        PlaneParam::One(s) => vec![*s],
        PlaneParam::Many(v) => v.clone(),
    };
    let mut planes = Vec::new();
    for n in names {
        match n {
            PlaneName::All => planes.extend([Plane::Axial, Plane::Coronal, Plane::Sagittal]),
            PlaneName::Axial => planes.push(Plane::Axial),
            PlaneName::Coronal => planes.push(Plane::Coronal),
            PlaneName::Sagittal => planes.push(Plane::Sagittal),
        }
    }
    let mut seen = Vec::new();
    planes.retain(|p| {
        let new = !seen.contains(p);
        seen.push(*p);
        new
    });
    planes
}

impl Stage for VolumeSlice {
    type Params = SliceParams;
    const NAME: &'static str = "volume.slice";
    const ROLE: Role = Role::Transform;
    const INPUTS: &'static [&'static str] = &[kinds::VOLUME];
    const OUTPUTS: &'static [&'static str] = &[kinds::IMAGE];
    const DESCRIPTION: &'static str =
        "Cut volumes into axial/coronal/sagittal images, RAS-canonical, square pixels";

    fn new(p: SliceParams, _host: &Host) -> Result<Self> {
        let slices = match p.slices {
            SlicesParam::Named(s) if s == "all" => SliceSelection::All,
            SlicesParam::Named(s) if s == "middle" => SliceSelection::Middle,
            SlicesParam::Named(s) => bail!("slices: '{s}' is not all, middle, a list or a range"),
            SlicesParam::List(v) => SliceSelection::Indices(v),
            SlicesParam::Range { start, stop, step } => {
                if step == 0 {
                    bail!("slices: step must be at least 1");
                }
                SliceSelection::Range { start, stop, step }
            }
        };
        let frames = match p.frames {
            FramesParam::Named(s) if s == "all" => FrameSelection::All,
            FramesParam::Named(s) => bail!("frames: '{s}' is not all or a list"),
            FramesParam::List(v) => FrameSelection::Indices(v),
        };
        Ok(VolumeSlice {
            planes: parse_plane_list(&p.plane),
            slices,
            frames,
            empty: p.skip_empty.then_some(EmptySliceRule {
                min_foreground: p.min_foreground,
                ..EmptySliceRule::default()
            }),
            opts: SliceOptions {
                radiological: p.radiological,
                square_pixels: p.square_pixels,
            },
        })
    }

    fn process(&self, _ctx: &Context, item: Item, out: &mut Emitter) -> Result<()> {
        let t = item.data()?;
        if item.meta.get::<usize>("channels").unwrap_or(1) > 1 {
            return self.cut_colour(&item, t, out);
        }
        let shape = t.shape().to_vec();
        if shape.len() < 3 {
            bail!("volume.slice needs a 3D or 4D volume, got shape {shape:?}");
        }
        if !t.is_f_contiguous() {
            bail!("volume.slice needs NIfTI voxel order (i fastest)");
        }
        // Slices are cut in the volume's own dtype: no float copy of the volume.
        match t.dtype() {
            DType::U8 => self.cut_volume::<u8>(&item, t, &shape, out),
            DType::I8 => self.cut_volume::<i8>(&item, t, &shape, out),
            DType::U16 => self.cut_volume::<u16>(&item, t, &shape, out),
            DType::I16 => self.cut_volume::<i16>(&item, t, &shape, out),
            DType::U32 => self.cut_volume::<u32>(&item, t, &shape, out),
            DType::I32 => self.cut_volume::<i32>(&item, t, &shape, out),
            DType::U64 => self.cut_volume::<u64>(&item, t, &shape, out),
            DType::I64 => self.cut_volume::<i64>(&item, t, &shape, out),
            DType::F32 => self.cut_volume::<f32>(&item, t, &shape, out),
            DType::F64 => self.cut_volume::<f64>(&item, t, &shape, out),
            DType::C64 | DType::C128 => {
                bail!("volume.slice needs real voxels; take the magnitude of complex data first")
            }
        }
    }
}

/// Where a slice sits in its volume, for its item's key and metadata.
struct SliceAt {
    plane: Plane,
    frame: usize,
    frames_total: usize,
    /// Slices of this plane and frame that are sent.
    count: usize,
}

/// The `image` item of one slice of `volume`.
fn slice_item(volume: &Item, at: &SliceAt, index: usize, spacing: [f64; 2], data: Tensor) -> Item {
    let base_key = volume.key();
    let key = if at.frames_total > 1 {
        format!("{base_key}#{}/f{}/{index}", at.plane.name(), at.frame)
    } else {
        format!("{base_key}#{}/{index}", at.plane.name())
    };
    let mut meta = volume.meta.clone();
    meta.0.remove(keys::AFFINE);
    meta.set(keys::KEY, key);
    meta.set("volume_key", base_key);
    meta.set(keys::PLANE, at.plane.name());
    meta.set(keys::INDEX, index);
    meta.set(keys::FRAME, at.frame);
    meta.set(keys::SLICE_COUNT, at.count);
    meta.set(keys::SPACING, spacing);
    Item {
        kind: kinds::IMAGE.to_string(),
        meta,
        tensors: vec![("data".into(), data)],
    }
}

impl VolumeSlice {
    /// Colour (RGB) volumes, channels-last bytes: each channel is cut like a grey volume and
    /// the three are interleaved again, giving `[rows, cols, 3]` slices. A slice is empty (for
    /// `skip_empty`) when its brightest channel is.
    fn cut_colour(&self, item: &Item, t: &Tensor, out: &mut Emitter) -> Result<()> {
        let shape = t.shape();
        let (&c, dims) = shape.split_last().context("empty shape")?;
        if t.dtype() != DType::U8 || c != 3 || dims.len() < 3 || !t.is_channels_last() {
            bail!(
                "volume.slice: colour volumes must be RGB bytes with a trailing channel axis, got {} {shape:?}",
                t.dtype().name()
            );
        }
        let bytes = t.channels_last_bytes()?;
        let channels: Vec<Vec<u8>> = (0..3)
            .map(|ch| bytes.iter().skip(ch).step_by(3).copied().collect())
            .collect();
        let frames_total: usize = dims[3..].iter().product::<usize>().max(1);
        let affine = item.meta.affine().context("volume has no affine")?;
        let views = channels
            .iter()
            .map(|d| CanonicalView::new(&d[..], [dims[0], dims[1], dims[2]], frames_total, &affine))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("{e}"))?;
        let frames = self
            .frames
            .resolve(frames_total)
            .map_err(|e| anyhow!("{e}"))?;
        let byte = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        for &plane in &self.planes {
            let indices = self
                .slices
                .resolve(plane.slice_count(&views[0]))
                .map_err(|e| anyhow!("{e}"))?;
            for &frame in &frames {
                let mut kept = Vec::with_capacity(indices.len());
                for &index in &indices {
                    let cut: Vec<Slice2D<SlicePixels<u8>>> = views
                        .iter()
                        .map(|v| extract_slice_typed(v, plane, index, frame, &self.opts))
                        .collect::<std::result::Result<_, _>>()
                        .map_err(|e| anyhow!("{e}"))?;
                    let (rows, cols) = (cut[0].rows, cut[0].cols);
                    let px: Vec<Vec<u8>> = cut
                        .iter()
                        .map(|s| match &s.data {
                            SlicePixels::Native(v) => v.clone(),
                            SlicePixels::Resampled(v) => v.iter().map(|&x| byte(x)).collect(),
                        })
                        .collect();
                    let mut rgb = vec![0u8; rows * cols * 3];
                    for (p, out_px) in rgb.chunks_exact_mut(3).enumerate() {
                        out_px.copy_from_slice(&[px[0][p], px[1][p], px[2][p]]);
                    }
                    if let Some(rule) = self.empty {
                        let brightest: Vec<u8> = rgb
                            .chunks_exact(3)
                            .map(|p| p[0].max(p[1]).max(p[2]))
                            .collect();
                        if rule.is_near_empty(&brightest, Window { lo: 0.0, hi: 255.0 }) {
                            continue;
                        }
                    }
                    let spacing = [cut[0].spacing_row, cut[0].spacing_col];
                    kept.push((index, spacing, Tensor::from_vec(rgb, &[rows, cols, 3])));
                }
                let at = SliceAt {
                    plane,
                    frame,
                    frames_total,
                    count: kept.len(),
                };
                for (index, spacing, tensor) in kept {
                    out.emit(slice_item(item, &at, index, spacing, tensor))?;
                }
            }
        }
        Ok(())
    }

    fn cut_volume<T: Element + Voxel>(
        &self,
        item: &Item,
        t: &Tensor,
        shape: &[usize],
        out: &mut Emitter,
    ) -> Result<()> {
        let frames_total: usize = shape[3..].iter().product::<usize>().max(1);
        let affine = item.meta.affine().context("volume has no affine")?;
        let data: &[T] = t.as_slice::<T>()?;
        let view = CanonicalView::new(data, [shape[0], shape[1], shape[2]], frames_total, &affine)
            .map_err(|e| anyhow!("{e}"))?;
        let (window, _) = recorded_window(&item.meta);
        let empty_window = match (self.empty, window) {
            (Some(_), None) => crate::core::min_max(data),
            _ => window,
        };
        let frames = self
            .frames
            .resolve(frames_total)
            .map_err(|e| anyhow!("{e}"))?;
        for &plane in &self.planes {
            let n = plane.slice_count(&view);
            let indices = self.slices.resolve(n).map_err(|e| anyhow!("{e}"))?;
            for &frame in &frames {
                let emit_slice = |s: Slice2D<SlicePixels<T>>, count: usize, out: &mut Emitter| {
                    let dims = [s.rows, s.cols];
                    let at = SliceAt {
                        plane,
                        frame,
                        frames_total,
                        count,
                    };
                    let tensor = match s.data {
                        SlicePixels::Native(v) => Tensor::from_vec(v, &dims),
                        SlicePixels::Resampled(v) => Tensor::from_vec(v, &dims),
                    };
                    out.emit(slice_item(
                        item,
                        &at,
                        s.index,
                        [s.spacing_row, s.spacing_col],
                        tensor,
                    ))
                };
                let cut = |index: usize| {
                    extract_slice_typed(&view, plane, index, frame, &self.opts)
                        .map_err(|e| anyhow!("{e}"))
                };
                match (self.empty, empty_window) {
                    (Some(rule), Some(w)) => {
                        // Cut first so the slice count sent downstream is exact.
                        let mut kept = Vec::with_capacity(indices.len());
                        for &index in &indices {
                            let s = cut(index)?;
                            let empty = match &s.data {
                                SlicePixels::Native(v) => rule.is_near_empty(v, w),
                                SlicePixels::Resampled(v) => rule.is_near_empty(v, w),
                            };
                            if !empty {
                                kept.push(s);
                            }
                        }
                        let count = kept.len();
                        for s in kept {
                            emit_slice(s, count, out)?;
                        }
                    }
                    // Without skipping, the count is known: send each slice as soon as it is cut.
                    _ => {
                        for &index in &indices {
                            emit_slice(cut(index)?, indices.len(), out)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- image.write

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    Jpg,
    Png,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum ManifestKind {
    Csv,
    Jsonl,
    Both,
    None,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteParams {
    /// Output folder, or an `s3://bucket/prefix` URL (each image is staged locally, then
    /// uploaded whole; manifests go up at the end of the run).
    pub out: String,
    #[serde(default = "default_format")]
    pub format: ImageFormat,
    /// JPEG quality 1-100.
    #[serde(default = "default_quality")]
    #[schemars(range(min = 1, max = 100))]
    pub quality: u8,
    /// PNG bit depth: 8 or 16.
    #[serde(default = "default_bits")]
    pub bit_depth: u8,
    /// File name template relative to `out`. Tokens: {stem} {plane} {index} {index:03} {frame}
    /// {frame:02} {ext} {series} {key}. Default `{stem}/{plane}_{index:03}.{ext}`, with
    /// `_f{frame:03}` added for 4D volumes.
    pub name: Option<String>,
    /// Dataset manifest(s) written in `out`: manifest.csv / manifest.jsonl.
    #[serde(default = "default_manifest")]
    pub manifest: ManifestKind,
    /// Also write `{stem}_{plane}_sheet.png`, a grid of every slice of a volume.
    #[serde(default)]
    pub contact_sheet: bool,
    /// Add to the manifests of earlier runs, one row per image as soon as it is written,
    /// instead of writing new manifests at the end of the run. For long-running (watch)
    /// pipelines: the manifests are complete at any moment and survive a crash. Rows of a
    /// volume processed again after an interruption (`replay` in its metadata) replace the
    /// rows written the first time.
    #[serde(default)]
    pub manifest_append: bool,
}

fn default_format() -> ImageFormat {
    ImageFormat::Jpg
}
fn default_quality() -> u8 {
    90
}
fn default_bits() -> u8 {
    8
}
fn default_manifest() -> ManifestKind {
    ManifestKind::Both
}

type SheetKey = (String, String, usize);

/// Thumbnails of a volume's slices waiting for the rest of the volume.
struct PendingSheet {
    expected: usize,
    stem: String,
    frames: usize,
    tiles: Vec<(usize, Vec<u8>, usize, usize)>,
}

/// Writes images (JPG or 8/16-bit PNG), a manifest a PyTorch Dataset can read, and optional
/// contact sheets. Every file is written under a temporary name and renamed.
pub struct ImageWrite {
    out: Destination,
    format: ImageFormat,
    quality: u8,
    bit_depth: u8,
    template: NameTemplate,
    template_4d: NameTemplate,
    manifests: Mutex<Vec<ManifestWriter>>,
    /// Replayed volumes whose old manifest rows were already removed in this run.
    replaced_volumes: Mutex<std::collections::HashSet<String>>,
    append: bool,
    sheets: Option<Mutex<HashMap<SheetKey, PendingSheet>>>,
}

const SHEET_TILE: usize = 128;

impl Stage for ImageWrite {
    type Params = WriteParams;
    const NAME: &'static str = "image.write";
    const ROLE: Role = Role::Sink;
    const INPUTS: &'static [&'static str] = &[kinds::IMAGE];
    const OUTPUTS: &'static [&'static str] = &[];
    const DESCRIPTION: &'static str =
        "Write images as JPG/PNG with a CSV/JSONL manifest and optional contact sheets";

    fn new(p: WriteParams, host: &Host) -> Result<Self> {
        if p.bit_depth != 8 && p.bit_depth != 16 {
            bail!("bit_depth must be 8 or 16");
        }
        if p.bit_depth == 16 && p.format == ImageFormat::Jpg {
            bail!("16-bit output needs format png");
        }
        if !(1..=100).contains(&p.quality) {
            bail!("quality must be 1..100");
        }
        let (template, template_4d) = match &p.name {
            Some(t) => {
                let t = NameTemplate::parse(t).map_err(|e| anyhow!("name: {e}"))?;
                (t.clone(), t)
            }
            None => (
                NameTemplate::parse("{stem}/{plane}_{index:03}.{ext}")
                    .map_err(|e| anyhow!("{e}"))?,
                NameTemplate::parse("{stem}/{plane}_f{frame:03}_{index:03}.{ext}")
                    .map_err(|e| anyhow!("{e}"))?,
            ),
        };
        if p.manifest_append && mindscan_storage::is_url(&p.out) {
            bail!(
                "manifest_append needs a local out: an object cannot be appended to \
                 ({} gets its manifests whole at the end of the run)",
                p.out
            );
        }
        let dest = Destination::new(&p.out)?;
        let out = dest.root().to_path_buf();
        std::fs::create_dir_all(&out)
            .with_context(|| format!("{}: cannot create output folder", out.display()))?;
        // Temporaries of an earlier run that was killed before renaming them.
        host.remove_stale_temps(Self::NAME, &out);
        // A split run (`--shard`) writes its part of each manifest: manifest.shard-I-of-N.csv,
        // joined by `mindscan manifest merge`.
        let shard = host.shard();
        let open = |name: &str, format| {
            let path = out.join(shard.part_name(name).unwrap_or_else(|| name.to_string()));
            if p.manifest_append {
                ManifestWriter::open_append(&path, format)
            } else {
                ManifestWriter::create(&path, format)
            }
            .with_context(|| format!("{}: cannot open the manifest", path.display()))
        };
        let mut manifests = Vec::new();
        if matches!(p.manifest, ManifestKind::Csv | ManifestKind::Both) {
            manifests.push(open("manifest.csv", ManifestFormat::Csv)?);
        }
        if matches!(p.manifest, ManifestKind::Jsonl | ManifestKind::Both) {
            manifests.push(open("manifest.jsonl", ManifestFormat::Jsonl)?);
        }
        Ok(ImageWrite {
            out: dest,
            format: p.format,
            quality: p.quality,
            bit_depth: p.bit_depth,
            template,
            template_4d,
            manifests: Mutex::new(manifests),
            replaced_volumes: Mutex::new(Default::default()),
            append: p.manifest_append,
            sheets: p.contact_sheet.then(|| Mutex::new(HashMap::new())),
        })
    }

    fn process(&self, ctx: &Context, item: Item, _out: &mut Emitter) -> Result<()> {
        let t = item.data()?;
        // Colour slices (from RGB volumes) are [rows, cols, 3] bytes, written as they are.
        let colour = match t.shape() {
            [_, _] => None,
            [_, _, 3] if t.dtype() == DType::U8 && t.is_c_contiguous() => Some(t.as_slice::<u8>()?),
            s => bail!("image.write needs 2D images or RGB [rows, cols, 3] bytes, got shape {s:?}"),
        };
        let (rows, cols) = (t.shape()[0], t.shape()[1]);
        let owned;
        let px = if let Some(rgb) = colour {
            owned = luma(rgb);
            Voxels::F32(&owned)
        } else if t.is_c_contiguous() {
            voxels(t)?
        } else {
            owned = t.to_f32_vec()?;
            Voxels::F32(&owned)
        };
        let m = &item.meta;
        let (recorded, per_slice) = recorded_window(m);
        let window = match recorded {
            _ if colour.is_some() => Window { lo: 0.0, hi: 255.0 },
            Some(w) if !per_slice => w,
            // No window chosen upstream, or per-slice mode: this image's own min-max.
            _ => px.min_max().unwrap_or(Window { lo: 0.0, hi: 0.0 }),
        };
        let plane = m.str(keys::PLANE).unwrap_or("image").to_string();
        let index: usize = m.get(keys::INDEX).unwrap_or(0);
        let frame: usize = m.get(keys::FRAME).unwrap_or(0);
        let frames: usize = m.get("frames").unwrap_or(1);
        let source = m.source().unwrap_or(item.key()).to_string();
        let stem = m
            .str("stem")
            .map(String::from)
            .unwrap_or_else(|| file_stem(&source));
        let ext = match self.format {
            ImageFormat::Jpg => "jpg",
            ImageFormat::Png => "png",
        };
        let template = if frames > 1 {
            &self.template_4d
        } else {
            &self.template
        };
        let rel = template
            .render(&NameFields {
                stem: &stem,
                plane: &plane,
                index,
                frame: Some(frame),
                ext,
                series: m.str(keys::SERIES),
                key: Some(item.key()),
            })
            .map_err(|e| anyhow!("{e}"))?;
        let path = self.out.root().join(&rel);
        let u8_pixels = (self.bit_depth == 8 || colour.is_some()).then(|| px.map_u8(&window));
        let bytes = match (self.format, colour, &u8_pixels) {
            (ImageFormat::Jpg, Some(rgb), _) => encode_jpeg_rgb(rgb, rows, cols, self.quality),
            (ImageFormat::Png, Some(rgb), _) => encode_png_rgb(rgb, rows, cols),
            (ImageFormat::Jpg, None, Some(p)) => encode_jpeg(p, rows, cols, self.quality),
            (ImageFormat::Png, None, Some(p)) => encode_png_u8(p, rows, cols),
            (_, None, None) => encode_png_u16(&px.map_u16(&window), rows, cols),
        }
        .map_err(|e| anyhow!("{e}"))?;
        write_atomic(&path, &bytes).with_context(|| format!("{}: cannot write", path.display()))?;
        self.out.commit(&path)?;

        let spacing: Vec<f64> = m.get(keys::SPACING).unwrap_or_else(|| vec![1.0, 1.0]);
        let row = ManifestRow {
            path: relative_path(self.out.root(), &path).unwrap_or(rel.clone()),
            source: source.clone(),
            plane: plane.clone(),
            index,
            frame: Some(frame),
            rows,
            cols,
            spacing_row: spacing.first().copied().unwrap_or(1.0),
            spacing_col: spacing.get(1).copied().unwrap_or(1.0),
            window_lo: window.lo,
            window_hi: window.hi,
            seed: Some(ctx.seed()),
            volume: m.str("volume_key").unwrap_or(item.key()).to_string(),
            augment: m.0.get("augment").cloned(),
            diffusion: m.0.get("diffusion").cloned(),
        };
        {
            let mut ms = self.manifests.lock().unwrap_or_else(|p| p.into_inner());
            // A volume processed again after an interruption: its rows from the first attempt
            // go before the first new one is added (under the same lock).
            if self.append && m.get::<bool>("replay").unwrap_or(false) {
                let mut replaced = self
                    .replaced_volumes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if replaced.insert(row.volume.clone()) {
                    for w in ms.iter_mut() {
                        w.remove_volume(&row.volume)?;
                    }
                }
            }
            for w in ms.iter_mut() {
                w.append(&row)?;
            }
        }
        if let Some(sheets) = &self.sheets {
            let expected: usize = m.get(keys::SLICE_COUNT).unwrap_or(0);
            let pixels = match u8_pixels {
                Some(p) => p,
                None => px.map_u8(&window),
            };
            let vol_key = m.str("volume_key").unwrap_or(&source).to_string();
            let done = {
                let mut map = sheets.lock().unwrap_or_else(|p| p.into_inner());
                let key = (vol_key, plane.clone(), frame);
                let entry = map.entry(key.clone()).or_insert_with(|| PendingSheet {
                    expected,
                    stem: stem.clone(),
                    frames,
                    tiles: Vec::new(),
                });
                entry
                    .tiles
                    .push((index, thumbnail(&pixels, rows, cols), rows, cols));
                if entry.tiles.len() >= entry.expected {
                    map.remove(&key).map(|s| (key, s))
                } else {
                    None
                }
            };
            if let Some((key, sheet)) = done {
                self.write_sheet(&key, sheet)?;
            }
        }
        Ok(())
    }

    fn finish(&self, ctx: &Context, _out: &mut Emitter) -> Result<()> {
        if let Some(sheets) = &self.sheets {
            let pending: Vec<(SheetKey, PendingSheet)> = sheets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain()
                .collect();
            for (key, sheet) in pending {
                ctx.warn(&format!(
                    "contact sheet for {} {} is incomplete ({} of {} slices)",
                    key.0,
                    key.1,
                    sheet.tiles.len(),
                    sheet.expected
                ));
                self.write_sheet(&key, sheet)?;
            }
        }
        let writers: Vec<ManifestWriter> =
            std::mem::take(&mut *self.manifests.lock().unwrap_or_else(|p| p.into_inner()));
        for w in writers {
            let rows = w.rows_written();
            let path = w.finish()?;
            self.out.commit(&path)?;
            ctx.info(&format!("manifest {} ({rows} rows)", self.out.shown(&path)));
        }
        Ok(())
    }
}

impl ImageWrite {
    fn write_sheet(&self, key: &SheetKey, mut sheet: PendingSheet) -> Result<()> {
        sheet.tiles.sort_by_key(|t| t.0);
        // Thumbnails are stored already reduced; the sheet only tiles them.
        let tiles: Vec<ContactSheetTile> = sheet
            .tiles
            .iter()
            .map(|(_, px, r, c)| {
                let (tr, tc) = thumb_dims(*r, *c);
                ContactSheetTile {
                    data: px,
                    rows: tr,
                    cols: tc,
                }
            })
            .collect();
        let png = contact_sheet_png(&tiles, SHEET_TILE).map_err(|e| anyhow!("{e}"))?;
        // Each part sanitised on its own, so a long stem cannot cut off the `_sheet.png` end.
        let (stem, plane) = (sanitize_component(&sheet.stem), sanitize_component(&key.1));
        let name = if sheet.frames > 1 {
            format!("{stem}_{plane}_f{:03}_sheet.png", key.2)
        } else {
            format!("{stem}_{plane}_sheet.png")
        };
        let path = self.out.root().join(name);
        write_atomic(&path, &png)?;
        self.out.commit(&path)
    }
}

/// Rec. 601 luma of RGB bytes: the grey value a colour slice shows in a contact sheet.
fn luma(rgb: &[u8]) -> Vec<f32> {
    rgb.chunks_exact(3)
        .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
        .collect()
}

/// The elements of a dense CPU tensor of any real dtype.
fn voxels(t: &Tensor) -> Result<Voxels<'_>> {
    Ok(match t.dtype() {
        DType::U8 => Voxels::U8(t.as_slice()?),
        DType::I8 => Voxels::I8(t.as_slice()?),
        DType::U16 => Voxels::U16(t.as_slice()?),
        DType::I16 => Voxels::I16(t.as_slice()?),
        DType::U32 => Voxels::U32(t.as_slice()?),
        DType::I32 => Voxels::I32(t.as_slice()?),
        DType::U64 => Voxels::U64(t.as_slice()?),
        DType::I64 => Voxels::I64(t.as_slice()?),
        DType::F32 => Voxels::F32(t.as_slice()?),
        DType::F64 => Voxels::F64(t.as_slice()?),
        DType::C64 | DType::C128 => {
            bail!("complex images have no real value; take the magnitude first")
        }
    })
}

fn thumb_dims(rows: usize, cols: usize) -> (usize, usize) {
    let longest = rows.max(cols).max(1);
    if longest <= SHEET_TILE {
        return (rows, cols);
    }
    let s = SHEET_TILE as f64 / longest as f64;
    (
        ((rows as f64 * s).round() as usize).max(1),
        ((cols as f64 * s).round() as usize).max(1),
    )
}

/// Nearest-neighbour reduction to at most SHEET_TILE px, so pending sheets stay small.
fn thumbnail(px: &[u8], rows: usize, cols: usize) -> Vec<u8> {
    let (tr, tc) = thumb_dims(rows, cols);
    if (tr, tc) == (rows, cols) {
        return px.to_vec();
    }
    let mut out = Vec::with_capacity(tr * tc);
    for r in 0..tr {
        let sr = (r * rows / tr).min(rows - 1);
        for c in 0..tc {
            let sc = (c * cols / tc).min(cols - 1);
            out.push(px[sr * cols + sc]);
        }
    }
    out
}
