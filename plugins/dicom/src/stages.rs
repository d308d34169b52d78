//! The `dicom.read` source: DICOM files, folders and globs → one `volume` item per series.
//!
//! Two passes: a header-only scan of every input (once per stage, shared by the workers), then
//! the series are decoded one at a time per worker (series `i` goes to worker
//! `i % worker_count`), so memory holds at most one series per worker.
//!
//! # What reaches the item (de-identification)
//!
//! * `key` and `series`: the hashed SeriesInstanceUID (`2.25.…`, plus `.n` for split series).
//! * `stem`: the output name from the `name` template (`%p_%s` by default), sanitised; only
//!   non-identifying specifiers exist.
//! * `source`: the **folder** holding the series' files (the common parent of its files), never
//!   a file path: some exporters name DICOM files after the patient, while the folder is the
//!   path the user passed (or one below it).
//! * `sidecar`: the BIDS-style sidecar of the core library, without any PS3.15 E.1 attribute
//!   unless allow-listed with `keep_tags`.
//!
//! Logs: skipped non-DICOM files at debug level; unreadable files, duplicates and series
//! warnings at warn level, naming files by path only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mindscan_sdk::prelude::*;
use mindscan_sdk::tensor::channels_last_strides;

use crate::core::{
    DeidOptions, DicomVolume, LoadOptions, PHI_KEYWORDS, PhilipsScaling, Series, VoxelData,
    load_series_lenient, load_series_with, scan,
};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// Files, folders (searched recursively) and glob patterns.
    pub paths: Vec<String>,
    /// DICOM keywords of de-identified attributes (PS3.15 E.1, e.g. `PatientAge`) to keep in the
    /// sidecar. Default: none — nothing identifying reaches outputs, names or logs.
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// Output name (dcm2niix-like): `%p` protocol, `%s` series number, `%d` series description,
    /// `%m` modality, `%e` echo number, `%j` hashed series UID, `%%` a percent sign. The result
    /// is sanitised; identifying specifiers (`%n`, `%i`, `%t`, ...) expand to nothing.
    #[serde(default = "default_name")]
    pub name: String,
    /// Zero-fill the slices of files that cannot be decoded (with a warning naming them)
    /// instead of failing the series.
    #[serde(default)]
    pub lenient: bool,
    /// Philips images with a private scale slope (2005,100E): `float` writes the scanner's
    /// floating-point values, FP = (SV·RS + RI) / (RS·SS), as dcm2niix does by default;
    /// `display` writes the displayed values SV·RS + RI (dcm2niix `-p n`).
    #[serde(default)]
    pub philips_scaling: PhilipsScalingParam,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum PhilipsScalingParam {
    #[default]
    Float,
    Display,
}

impl From<PhilipsScalingParam> for PhilipsScaling {
    fn from(p: PhilipsScalingParam) -> Self {
        match p {
            PhilipsScalingParam::Float => PhilipsScaling::Float,
            PhilipsScalingParam::Display => PhilipsScaling::Display,
        }
    }
}

fn default_name() -> String {
    "%p_%s".into()
}

/// A series with the names its item will carry.
pub struct Planned {
    pub series: Series,
    /// Output name (from the `name` template, made unique among the planned series).
    pub stem: String,
    /// The folder holding the series' files.
    pub source: String,
}

/// Names scanned series: the `name` template, with `_2`, `_3`... for repeated names.
pub fn plan_series(series: Vec<Series>, template: &str) -> Vec<Planned> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    series
        .into_iter()
        .map(|series| {
            let base = series.output_name(template);
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            let stem = if *n == 1 { base } else { format!("{base}_{n}") };
            let source = common_folder(&series).display().to_string();
            Planned {
                series,
                stem,
                source,
            }
        })
        .collect()
}

/// De-identification keeping the `keep_tags` keywords (each must be one of [`PHI_KEYWORDS`]).
pub fn deid_options(keep_tags: &[String]) -> Result<DeidOptions> {
    for k in keep_tags {
        if !PHI_KEYWORDS.contains(&k.as_str()) {
            bail!(
                "keep_tags: unknown keyword '{k}' (known: {})",
                PHI_KEYWORDS.join(", ")
            );
        }
    }
    Ok(DeidOptions::keeping(keep_tags.iter().cloned()))
}

/// Decodes a planned series into a `volume` item with default scaling; `warn` receives the
/// series' warnings.
pub fn load_planned(
    p: &Planned,
    deid: &DeidOptions,
    lenient: bool,
    warn: &dyn Fn(&str),
) -> Result<Item> {
    load_planned_with(p, &LoadOptions::from(deid.clone()), lenient, warn)
}

/// [`load_planned`] with every load option.
pub fn load_planned_with(
    p: &Planned,
    opts: &LoadOptions,
    lenient: bool,
    warn: &dyn Fn(&str),
) -> Result<Item> {
    let vol = if lenient {
        let (vol, failures) = load_series_lenient(&p.series, opts)?;
        for f in failures {
            warn(&format!("series {}: {f}", p.stem));
        }
        vol
    } else {
        load_series_with(&p.series, opts)?
    };
    for w in &vol.warnings {
        warn(&format!("series {}: {w}", p.stem));
    }
    Ok(volume_item(p, vol))
}

/// Reads DICOM series as volumes.
pub struct DicomRead {
    inputs: Vec<PathBuf>,
    opts: LoadOptions,
    name: String,
    lenient: bool,
    plan: OnceLock<Vec<Planned>>,
}

/// The deepest folder holding every file of the series.
fn common_folder(series: &Series) -> PathBuf {
    let mut paths = series.frames.iter().map(|f| f.path.as_path());
    let Some(first) = paths.next() else {
        return PathBuf::new();
    };
    let mut base = first.parent().unwrap_or(Path::new("")).to_path_buf();
    for p in paths {
        while !p.starts_with(&base) {
            if !base.pop() {
                break;
            }
        }
    }
    base
}

impl DicomRead {
    /// The header pass. Unreadable files, named inputs that are not DICOM images and inputs
    /// without any series are item errors (named, counted, and in the run's exit status);
    /// `on_error` decides whether the run goes on.
    fn scan(&self, ctx: &Context, out: &mut Emitter) -> Result<Vec<Planned>> {
        let rep = scan(&self.inputs);
        for s in &rep.skipped {
            ctx.debug(&format!("skipped {}: {}", s.path.display(), s.reason));
        }
        for e in &rep.errors {
            let input = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            out.item_error(&input, &input, &anyhow!("{e}"))?;
        }
        for w in &rep.warnings {
            ctx.warn(w);
        }
        if rep.series.is_empty() {
            if rep.errors.is_empty() {
                for inp in &self.inputs {
                    let input = inp.display().to_string();
                    let skipped = rep
                        .skipped
                        .iter()
                        .filter(|s| s.path.starts_with(inp))
                        .count();
                    out.item_error(
                        &input,
                        &input,
                        &anyhow!("no DICOM series found ({skipped} file(s) skipped as not DICOM)"),
                    )?;
                }
            }
        } else {
            let files: usize = rep.series.iter().map(Series::file_count).sum();
            ctx.info(&format!(
                "found {} DICOM series in {files} file(s) ({} other file(s) skipped, {} unreadable)",
                rep.series.len(),
                rep.skipped.len(),
                rep.errors.len()
            ));
        }
        // Same name for several series (e.g. split by echo): the 2nd gets `_2`, and so on.
        Ok(plan_series(rep.series, &self.name))
    }

    fn load(&self, ctx: &Context, p: &Planned) -> Result<Item> {
        load_planned_with(p, &self.opts, self.lenient, &|w| ctx.warn(w))
    }
}

/// Builds the `volume` item of a decoded series (the layout `nifti.read` produces).
fn volume_item(p: &Planned, vol: DicomVolume) -> Item {
    let [ni, nj, nk, nt] = vol.dims;
    let dims: Vec<usize> = if nt > 1 {
        vec![ni, nj, nk, nt]
    } else {
        vec![ni, nj, nk]
    };
    let mut item = Item::new(kinds::VOLUME, &p.series.id);
    let mut channels = 1;
    let tensor = match vol.voxels {
        VoxelData::U8(v) => Tensor::volume(v, &dims),
        VoxelData::I8(v) => Tensor::volume(v, &dims),
        VoxelData::U16(v) => Tensor::volume(v, &dims),
        VoxelData::I16(v) => Tensor::volume(v, &dims),
        VoxelData::U32(v) => Tensor::volume(v, &dims),
        VoxelData::I32(v) => Tensor::volume(v, &dims),
        VoxelData::F32(v) => Tensor::volume(v, &dims),
        VoxelData::F64(v) => Tensor::volume(v, &dims),
        VoxelData::Rgb8(v) => {
            // Trailing channel axis, channel fastest (as nifti.read lays out RGB).
            channels = 3;
            let mut shape = dims.clone();
            shape.push(3);
            Tensor::from_vec_strided(v, &shape, &channels_last_strides(&dims, 3))
        }
    };
    item.set_tensor("data", tensor);
    let m = &mut item.meta;
    m.set(keys::SOURCE, &p.source);
    m.set("stem", &p.stem);
    m.set(keys::SERIES, &p.series.id);
    m.set_affine(&vol.affine);
    m.set(keys::SPACING, &vol.pixdim[..3]);
    if nt > 1 {
        m.set("frames", nt);
        m.set("frame_interval", vol.pixdim[3]);
    }
    if channels > 1 {
        m.set("channels", channels);
    }
    // Scanner coordinates (1) when the geometry came from the tags; unknown (0) for the
    // nominal geometry of images without position and orientation, as dcm2niix writes.
    let code = i32::from(p.series.geometry.from_tags);
    let mut codes = serde_json::json!({
        "qform_code": code,
        "sform_code": code,
        "scaling_applied": false,
        // NIFTI_UNITS_MM | NIFTI_UNITS_SEC, as dcm2niix writes.
        "xyzt_units": 10,
    });
    if let (Some(s), Some(i)) = (vol.scl_slope, vol.scl_inter) {
        codes["scl_slope"] = s.into();
        codes["scl_inter"] = i.into();
    }
    m.set("nifti", codes);
    m.set(
        "dicom",
        serde_json::json!({
            "files": p.series.file_count(),
            "modality": p.series.modality(),
            "series_number": p.series.series_number(),
            "mosaic": p.series.mosaic,
            "transfer_syntaxes": p.series.transfer_syntaxes,
        }),
    );
    m.set("sidecar", serde_json::Value::Object(vol.sidecar));
    item
}

impl Stage for DicomRead {
    type Params = ReadParams;
    const NAME: &'static str = "dicom.read";
    const ROLE: Role = Role::Source;
    const INPUTS: &'static [&'static str] = &[];
    const OUTPUTS: &'static [&'static str] = &[kinds::VOLUME];
    const DESCRIPTION: &'static str =
        "Read DICOM series (files, folders, globs) as de-identified volumes, one per series";

    fn new(p: ReadParams, _host: &Host) -> Result<Self> {
        if p.paths.is_empty() {
            bail!("paths is empty: give DICOM files, folders or glob patterns");
        }
        let deid = deid_options(&p.keep_tags)?;
        if p.name.trim().is_empty() {
            bail!("name must not be empty");
        }
        Ok(DicomRead {
            inputs: p.paths.iter().map(PathBuf::from).collect(),
            opts: LoadOptions {
                deid,
                philips_scaling: p.philips_scaling.into(),
            },
            name: p.name,
            lenient: p.lenient,
            plan: OnceLock::new(),
        })
    }

    fn produce(&self, ctx: &Context, out: &mut Emitter) -> Result<()> {
        // First pass, once for all workers: headers only.
        // The worker that runs the scan reports its errors; a cancelled run plans nothing.
        let mut stopped = None;
        let plan = self.plan.get_or_init(|| {
            self.scan(ctx, out).unwrap_or_else(|e| {
                stopped = Some(e);
                Vec::new()
            })
        });
        if let Some(e) = stopped {
            return Err(e);
        }
        // Second pass: one series at a time per worker.
        for p in plan
            .iter()
            .skip(ctx.worker_index())
            .step_by(ctx.worker_count())
        {
            if ctx.is_cancelled() {
                break;
            }
            // Decode only when the pipeline has room for one more volume (max_in_flight).
            out.wait_ready()?;
            match self.load(ctx, p) {
                Ok(item) => out.emit(item)?,
                Err(e) => out.item_error(&p.series.id, &p.source, &e)?,
            }
        }
        Ok(())
    }
}
