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

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mindscan_dicom::item::{Planned, deid_options, load_planned_with, plan_series, reference_item};
use mindscan_dicom::{LoadOptions, PhilipsScaling, Series, scan};
use mindscan_sdk::prelude::*;
use mindscan_sdk::reference::{META_KEY, Reference};
use mindscan_storage::{localise_inputs, origin_of};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// Files, folders (searched recursively), glob patterns and `s3://` prefixes (mirrored
    /// into the local cache, `$MINDSCAN_CACHE`).
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

/// Reads DICOM series as volumes.
pub struct DicomRead {
    series: SeriesScan,
    opts: LoadOptions,
    lenient: bool,
}

/// The header pass both sources share: inputs → named series of this shard, once per stage.
struct SeriesScan {
    /// As given: paths, globs, `s3://` prefixes (mirrored when the scan runs).
    inputs: Vec<String>,
    name: String,
    plan: OnceLock<Vec<Planned>>,
    shard: mindscan_sdk::shard::Shard,
}

/// A path as keys, messages and references show it: a mirrored object's URL, else the path.
fn name_of(path: &Path) -> String {
    origin_of(path).unwrap_or_else(|| path.display().to_string())
}

/// A series reference whose files came from an object store names the objects, not this
/// machine's cache, so `volume.load` anywhere can fetch them.
fn with_object_urls(mut item: Item) -> Item {
    if let Ok(mut r) = Reference::of(&item)
        && let Reference::Series { files, .. } = &mut r
    {
        for f in files.iter_mut() {
            *f = name_of(Path::new(f));
        }
        item.meta.set(META_KEY, &r);
    }
    item
}

impl SeriesScan {
    fn new(paths: &[String], name: String, host: &Host) -> Result<Self> {
        if paths.is_empty() {
            bail!("paths is empty: give DICOM files, folders or glob patterns");
        }
        if name.trim().is_empty() {
            bail!("name must not be empty");
        }
        Ok(SeriesScan {
            inputs: paths.to_vec(),
            name,
            plan: OnceLock::new(),
            shard: host.shard(),
        })
    }

    /// The series of this worker (series `i` goes to worker `i % worker_count`). The first
    /// worker to ask runs the scan and reports its errors; a cancelled run plans nothing.
    fn this_workers<'a>(
        &'a self,
        ctx: &Context,
        out: &mut Emitter,
    ) -> Result<impl Iterator<Item = &'a Planned> + use<'a>> {
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
        Ok(plan
            .iter()
            .skip(ctx.worker_index())
            .step_by(ctx.worker_count()))
    }

    /// The header pass. Unreadable files, named inputs that are not DICOM images and inputs
    /// without any series are item errors (named, counted, and in the run's exit status);
    /// `on_error` decides whether the run goes on.
    fn scan(&self, ctx: &Context, out: &mut Emitter) -> Result<Vec<Planned>> {
        let inputs: Vec<PathBuf> = localise_inputs(&self.inputs, &|_| true)?
            .into_iter()
            .map(PathBuf::from)
            .collect();
        let rep = scan(&inputs);
        for s in &rep.skipped {
            ctx.debug(&format!("skipped {}: {}", s.path.display(), s.reason));
        }
        for e in rep.errors.iter().filter(|e| {
            self.shard
                .keeps(&name_of(e.path().unwrap_or(Path::new(""))))
        }) {
            let input = e.path().map(name_of).unwrap_or_default();
            out.item_error(&input, &input, &anyhow!("{e}"))?;
        }
        for w in &rep.warnings {
            ctx.warn(w);
        }
        if rep.series.is_empty() {
            if rep.errors.is_empty() {
                for inp in &inputs {
                    let input = name_of(inp);
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
        // Named over every series before a split run keeps its shard's studies, so each
        // series gets the name it has in an unsplit run and shards never write the same file.
        let mut plan = plan_series(rep.series, &self.name);
        plan.retain(|p| self.shard.keeps(p.series.shard_key()));
        for p in &mut plan {
            p.source = name_of(Path::new(&p.source));
        }
        Ok(plan)
    }
}

impl Stage for DicomRead {
    type Params = ReadParams;
    const NAME: &'static str = "dicom.read";
    const ROLE: Role = Role::Source;
    const INPUTS: &'static [&'static str] = &[];
    const OUTPUTS: &'static [&'static str] = &[kinds::VOLUME];
    const DESCRIPTION: &'static str =
        "Read DICOM series (files, folders, globs) as de-identified volumes, one per series";

    fn new(p: ReadParams, host: &Host) -> Result<Self> {
        let deid = deid_options(&p.keep_tags)?;
        Ok(DicomRead {
            series: SeriesScan::new(&p.paths, p.name, host)?,
            opts: LoadOptions {
                deid,
                philips_scaling: p.philips_scaling.into(),
            },
            lenient: p.lenient,
        })
    }

    fn produce(&self, ctx: &Context, out: &mut Emitter) -> Result<()> {
        // First pass, once for all workers: headers only. Second: one series at a time.
        for p in self.series.this_workers(ctx, out)? {
            if ctx.is_cancelled() {
                break;
            }
            // Decode only when the pipeline has room for one more volume (max_in_flight).
            out.wait_ready()?;
            match load_planned_with(p, &self.opts, self.lenient, &|w| ctx.warn(w)) {
                Ok(item) => out.emit(item)?,
                Err(e) => out.item_error(&p.series.id, &p.source, &e)?,
            }
        }
        Ok(())
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanParams {
    /// Files, folders (searched recursively), glob patterns and `s3://` prefixes (mirrored
    /// into the local cache, `$MINDSCAN_CACHE`).
    pub paths: Vec<String>,
    /// Output name template, as for `dicom.read` (`%p_%s` by default).
    #[serde(default = "default_name")]
    pub name: String,
}

/// Finds DICOM series and emits a reference to each (no pixels): `volume.load` decodes them,
/// here or on another machine (through `queue.publish` / `queue.consume`).
pub struct DicomScan {
    series: SeriesScan,
}

impl Stage for DicomScan {
    type Params = ScanParams;
    const NAME: &'static str = "dicom.scan";
    const ROLE: Role = Role::Source;
    const INPUTS: &'static [&'static str] = &[];
    const OUTPUTS: &'static [&'static str] = &[kinds::REFERENCE];
    const DESCRIPTION: &'static str = "Find DICOM series (files, folders, globs) and emit a \
         reference to each (files and identity, no pixels) for volume.load";

    fn new(p: ScanParams, host: &Host) -> Result<Self> {
        Ok(DicomScan {
            series: SeriesScan::new(&p.paths, p.name, host)?,
        })
    }

    fn produce(&self, ctx: &Context, out: &mut Emitter) -> Result<()> {
        for p in self.series.this_workers(ctx, out)? {
            if ctx.is_cancelled() {
                break;
            }
            out.emit(with_object_urls(reference_item(p)))?;
        }
        Ok(())
    }
}
