//! Input discovery, header pass, grouping / splitting / sorting.

use super::deid::hash_uid;
use super::header::{self, FileHeader, FrameInfo, OpenedHeader};
use super::{DicomError, FrameRef, Geometry, ScanReport, Series, SeriesSummary, SkippedFile};
use mindscan_sdk::walk::{Entry as WalkEntry, Step, Walker};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DICOMDIR_CLASS: &str = "1.2.840.10008.1.3.10";

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Every file below `dir`, depth-first in name order; hidden entries are skipped, and each
/// real folder is entered once (symlink loops such as `up -> ..` end, see `mindscan_sdk::walk`).
fn walk(
    walker: &mut Walker,
    dir: &Path,
    out: &mut Vec<PathBuf>,
    skipped: &mut Vec<SkippedFile>,
    errors: &mut Vec<DicomError>,
) {
    walker.walk(dir, &mut |e| {
        match e {
            WalkEntry::Dir(p) if p != dir && is_hidden(p) => {
                tracing::debug!(path = %p.display(), "skipping hidden entry");
                skipped.push(SkippedFile {
                    path: p.to_path_buf(),
                    reason: "hidden file".into(),
                });
                return Step::Skip;
            }
            WalkEntry::Dir(_) => {}
            WalkEntry::File(p) if is_hidden(p) => {
                tracing::debug!(path = %p.display(), "skipping hidden entry");
                skipped.push(SkippedFile {
                    path: p.to_path_buf(),
                    reason: "hidden file".into(),
                });
            }
            WalkEntry::File(p) => {
                if p.is_file() {
                    out.push(p.to_path_buf());
                }
            }
            WalkEntry::Error(p, err) => errors.push(DicomError::List {
                path: p.to_path_buf(),
                message: err.to_string(),
            }),
        }
        Step::Continue
    });
}

/// Expand files, folders (recursive) and glob patterns into a sorted file list.
fn expand(
    inputs: &[PathBuf],
    skipped: &mut Vec<SkippedFile>,
    errors: &mut Vec<DicomError>,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut walker = Walker::new();
    for inp in inputs {
        if inp.is_dir() {
            walk(&mut walker, inp, &mut out, skipped, errors);
        } else if inp.is_file() {
            out.push(inp.clone());
        } else {
            let s = inp.to_string_lossy();
            let is_glob = s.contains(['*', '?', '[']);
            match is_glob.then(|| glob::glob(&s)) {
                Some(Ok(paths)) => {
                    let mut n = 0;
                    for p in paths.flatten() {
                        n += 1;
                        if p.is_dir() {
                            walk(&mut walker, &p, &mut out, skipped, errors);
                        } else if is_hidden(&p) {
                            skipped.push(SkippedFile {
                                path: p,
                                reason: "hidden file".into(),
                            });
                        } else {
                            out.push(p);
                        }
                    }
                    if n == 0 {
                        errors.push(DicomError::Read {
                            path: inp.clone(),
                            message: "glob pattern matched nothing".into(),
                        });
                    }
                }
                Some(Err(e)) => errors.push(DicomError::Read {
                    path: inp.clone(),
                    message: format!("bad glob pattern: {e}"),
                }),
                None => errors.push(DicomError::Read {
                    path: inp.clone(),
                    message: "no such file or folder".into(),
                }),
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

enum Outcome {
    Ok(Box<FileHeader>),
    Skip(String),
    Err(DicomError),
}

fn native_ts(ts: &str) -> bool {
    matches!(
        ts,
        "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2"
    )
}

fn read_header(path: &Path) -> Outcome {
    if path
        .file_name()
        .is_some_and(|n| n.eq_ignore_ascii_case("DICOMDIR"))
    {
        return Outcome::Skip("DICOMDIR (media directory, no image)".into());
    }
    let hb = match header::open_header(path) {
        Ok(OpenedHeader::Dicom(h)) => h,
        Ok(OpenedHeader::NotDicom(r)) => return Outcome::Skip(r),
        Err(e) => return Outcome::Err(e),
    };
    if hb.meta.sop_class_uid == DICOMDIR_CLASS {
        return Outcome::Skip("DICOMDIR (media directory, no image)".into());
    }
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    let parsed = hb
        .data_set()
        .and_then(|o| header::extract(&o, &hb.meta, file_len));
    let h = match parsed {
        Ok(h) => FileHeader {
            pixel: hb.pixel,
            ..h
        },
        Err(e) if e.contains("Rows") => {
            return Outcome::Skip(format!("DICOM object without an image: {e}"));
        }
        Err(e) => {
            return Outcome::Err(DicomError::Read {
                path: path.to_path_buf(),
                message: e,
            });
        }
    };
    // Truncation check for uncompressed data: the file must be able to hold
    // the pixel data the header announces.
    if native_ts(&h.transfer_syntax) {
        let m = &h.meta;
        let need = m.rows as u64
            * m.cols as u64
            * m.samples_per_pixel as u64
            * m.number_of_frames as u64
            * m.bits_allocated as u64
            / 8;
        if let Ok(md) = std::fs::metadata(path)
            && md.len() < need
        {
            return Outcome::Err(DicomError::Read {
                path: path.to_path_buf(),
                message: format!(
                    "truncated file: header announces {need} bytes of pixel data but the file has only {} bytes",
                    md.len()
                ),
            });
        }
    }
    Outcome::Ok(Box::new(h))
}

/// What one file holds, from its header alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileIdentity {
    /// An image instance: its SeriesInstanceUID and SOPInstanceUID (as stored, not hashed).
    Instance { series_uid: String, sop_uid: String },
    /// Not DICOM, or DICOM without an image (DICOMDIR, structured report...): the reason.
    NotImage(String),
}

/// Reads one file's header (stopping before Pixel Data) to tell whether it is a complete,
/// readable DICOM image and which series it belongs to. Uncompressed files shorter than the
/// pixel data their header announces are errors (a copy still in progress, or truncated).
pub fn identify(path: &Path) -> Result<FileIdentity, DicomError> {
    identify_keeping(path).map(|(id, _)| id)
}

/// A file header read once and kept, so that [`scan_with`] need not read it again.
pub struct ParsedHeader {
    path: PathBuf,
    header: Box<FileHeader>,
}

impl ParsedHeader {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// [`identify`], also returning the parsed header of an image instance.
pub fn identify_keeping(path: &Path) -> Result<(FileIdentity, Option<ParsedHeader>), DicomError> {
    match read_header(path) {
        Outcome::Ok(h) => Ok((
            FileIdentity::Instance {
                series_uid: h.meta.series_uid.clone(),
                sop_uid: h.sop_uid.clone(),
            },
            Some(ParsedHeader {
                path: path.to_path_buf(),
                header: h,
            }),
        )),
        Outcome::Skip(reason) => Ok((FileIdentity::NotImage(reason), None)),
        Outcome::Err(e) => Err(e),
    }
}

/// [`scan`] of the files `files`, reusing the headers in `parsed` (by path) and reading the
/// others. Headers in `parsed` whose path is not in `files` are ignored.
pub fn scan_with(files: &[PathBuf], parsed: Vec<ParsedHeader>) -> ScanReport {
    let mut cache: HashMap<PathBuf, Box<FileHeader>> =
        parsed.into_iter().map(|p| (p.path, p.header)).collect();
    let known: Vec<(PathBuf, Option<Box<FileHeader>>)> =
        files.iter().map(|p| (p.clone(), cache.remove(p))).collect();
    let outcomes: Vec<(PathBuf, Outcome)> = known
        .into_par_iter()
        .map(|(p, h)| {
            let o = match h {
                Some(h) => Outcome::Ok(h),
                None => read_header(&p),
            };
            (p, o)
        })
        .collect();
    assemble(ScanReport::default(), outcomes)
}

/// One frame with its file header, before grouping.
#[derive(Clone)]
struct Entry {
    path: PathBuf,
    h: Arc<FileHeader>,
    f: FrameInfo,
}

pub(crate) fn image_class(it: &[String]) -> &'static str {
    for v in it {
        match v.to_ascii_uppercase().as_str() {
            "P" | "PHASE" => return "phase",
            "R" | "REAL" => return "real",
            "I" | "IMAGINARY" => return "imaginary",
            _ => {}
        }
    }
    "magnitude"
}

fn r4(x: f64) -> f64 {
    let v = (x * 1e4).round() / 1e4;
    if v == 0.0 { 0.0 } else { v }
}

fn split_key(e: &Entry) -> String {
    let m = &e.h.meta;
    let ori =
        e.f.orientation
            .map(|o| format!("{:?}", o.map(r4)))
            .unwrap_or_else(|| "none".into());
    let echo = match m.echo_number {
        Some(n) => format!("echo{n}"),
        None => String::new(),
    };
    let te =
        e.f.echo_time_ms
            .map(|t| format!("TE{:.2}", t))
            .unwrap_or_default();
    format!(
        "orientation={ori} matrix={}x{}{} spp={} bits={} {echo}{te} {}",
        m.cols,
        m.rows,
        m.mosaic.map(|n| format!(" mosaic{n}")).unwrap_or_default(),
        m.samples_per_pixel,
        m.bits_allocated,
        if m.field_map_hz {
            "fieldmaphz"
        } else {
            image_class(&m.image_type)
        }
    )
}

pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

/// Scan inputs (files, folders recursively, glob patterns): header-only pass,
/// grouping and sorting. Never fails: problems are reported in the report.
/// A file named as an input that is not a DICOM image is an error (the user meant it); one
/// found while walking a folder is skipped quietly.
pub fn scan(inputs: &[PathBuf]) -> ScanReport {
    let mut rep = ScanReport::default();
    let files = expand(inputs, &mut rep.skipped, &mut rep.errors);
    let outcomes: Vec<(PathBuf, Outcome)> = files
        .par_iter()
        .map(|p| {
            let o = match read_header(p) {
                Outcome::Skip(reason) if inputs.contains(p) => Outcome::Err(DicomError::Read {
                    path: p.clone(),
                    message: reason,
                }),
                o => o,
            };
            (p.clone(), o)
        })
        .collect();
    assemble(rep, outcomes)
}

/// Groups and sorts the read headers into series (the second half of [`scan`]).
fn assemble(mut rep: ScanReport, outcomes: Vec<(PathBuf, Outcome)>) -> ScanReport {
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen: HashSet<(String, u32)> = HashSet::new();
    let mut dup_warn: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, o) in outcomes {
        match o {
            Outcome::Skip(reason) => {
                tracing::debug!(path = %path.display(), %reason, "skipping non-DICOM file");
                rep.skipped.push(SkippedFile { path, reason });
            }
            Outcome::Err(e) => {
                // The caller reports errors (the `dicom.read` stage logs them once).
                tracing::debug!("{e}");
                rep.errors.push(e);
            }
            Outcome::Ok(h) => {
                let h: Arc<FileHeader> = Arc::from(h);
                for f in &h.frames {
                    if !seen.insert((h.sop_uid.clone(), f.frame)) {
                        let w = format!(
                            "duplicate SOPInstanceUID (instance {}, frame {}) dropped",
                            h.instance_number
                                .map(|n| n.to_string())
                                .unwrap_or("?".into()),
                            f.frame + 1
                        );
                        tracing::debug!(path = %path.display(), "{w}");
                        rep.warnings.push(format!("{w}: {}", path.display()));
                        let ws = dup_warn.entry(h.meta.series_uid.clone()).or_default();
                        if !ws.contains(&w) {
                            ws.push(w);
                        }
                        continue;
                    }
                    entries.push(Entry {
                        path: path.clone(),
                        h: h.clone(),
                        f: f.clone(),
                    });
                }
            }
        }
    }
    // Group by SeriesInstanceUID, then by split key.
    let mut groups: BTreeMap<String, BTreeMap<String, Vec<Entry>>> = BTreeMap::new();
    for e in entries {
        let key = split_key(&e);
        groups
            .entry(e.h.meta.series_uid.clone())
            .or_default()
            .entry(key)
            .or_default()
            .push(e);
    }
    for (uid, splits) in groups {
        let n_splits = splits.len();
        let base_id = hash_uid(&uid, "");
        for (i, (key, ents)) in splits.into_iter().enumerate() {
            let id = if n_splits > 1 {
                format!("{base_id}.{}", i + 1)
            } else {
                base_id.clone()
            };
            let mut s = build_series(id, key, ents);
            if let Some(w) = dup_warn.get(&uid) {
                s.warnings.extend(w.iter().cloned());
            }
            if n_splits > 1 {
                s.warnings.push(format!(
                    "SeriesInstanceUID split into {n_splits} series (orientation/matrix/echo/image type differ)"
                ));
            }
            rep.series.push(s);
        }
    }
    rep.series
        .sort_by(|a, b| (a.meta.series_number, &a.id).cmp(&(b.meta.series_number, &b.id)));
    rep
}

/// Volume order: private dimension indices of enhanced files first (Philips' ASL label type:
/// all control volumes, then all label volumes, as dcm2niix), then acquisition time, temporal
/// position, acquisition number, instance number, frame number.
fn time_key(e: &Entry) -> (Vec<i64>, i64, i64, i64, i64, u32) {
    (
        e.f.volume_rank.clone(),
        e.f.acq_time
            .map(|t| (t * 1e4).round() as i64)
            .unwrap_or(i64::MIN),
        e.f.temporal.unwrap_or(i64::MIN),
        e.h.meta.acquisition_number.unwrap_or(i64::MIN),
        e.h.instance_number.unwrap_or(i64::MIN),
        e.f.frame,
    )
}

fn to_frame_ref(e: &Entry, pos: Option<[f64; 3]>) -> FrameRef {
    FrameRef {
        path: e.path.clone(),
        frame: e.f.frame,
        transfer_syntax: e.h.transfer_syntax.clone(),
        position: pos,
        instance_number: e.h.instance_number,
        rescale_slope: e.f.slope,
        rescale_intercept: e.f.intercept,
        philips_scale_slope: e.f.philips_scale_slope,
        pixel: e.h.pixel,
        frames_in_file: e.h.frames.len() as u32,
        acquisition_time: e.f.acq_time,
        temporal_position: e.f.temporal,
        acquisition_number: e.h.meta.acquisition_number,
    }
}

fn build_series(id: String, split_key: String, mut ents: Vec<Entry>) -> Series {
    let mut warnings = Vec::new();
    let meta = ents[0].h.meta.clone();
    let (rows, cols) = (meta.rows as usize, meta.cols as usize);
    let orientation = ents.iter().find_map(|e| e.f.orientation);
    let spacing = ents
        .iter()
        .find_map(|e| e.f.pixel_spacing)
        .unwrap_or_else(|| {
            warnings.push("no PixelSpacing: 1 mm assumed".into());
            [1.0, 1.0]
        });
    let from_tags = orientation.is_some() && ents.iter().all(|e| e.f.position.is_some());
    let ori = orientation.unwrap_or([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    let rdir = [ori[0], ori[1], ori[2]];
    let cdir = [ori[3], ori[4], ori[5]];
    let mut normal = cross(rdir, cdir);
    let nn = norm(normal);
    if nn > 0.0 {
        normal = normal.map(|v| v / nn);
    }
    let nominal_step = meta
        .spacing_between_slices
        .filter(|v| *v > 0.0)
        .or(meta.slice_thickness.filter(|v| *v > 0.0))
        .unwrap_or(1.0);

    let mut frames: Vec<FrameRef> = Vec::new();
    let mut slots: Vec<Option<usize>> = Vec::new();
    let (ni, nj, nk, nt);
    let origin;
    let slice_vec;

    if let Some(n) = meta.mosaic {
        // Mosaic: each image is one volume of n slices, tiled left to right, top to bottom;
        // Siemens uses a square grid, UIH ceil(√n) columns by ceil(n / columns) rows.
        let square = (n as f64).sqrt().ceil() as usize;
        let (tile_cols, tile_rows) = meta
            .mosaic_grid
            .map(|(c, r)| (c as usize, r as usize))
            .unwrap_or((square, square));
        ni = cols / tile_cols;
        nj = rows / tile_rows;
        nk = n as usize;
        if let Some(sn) = meta.csa_slice_normal
            && norm(sn) > 0.0
        {
            normal = sn.map(|v| v / norm(sn));
        }
        ents.sort_by_cached_key(time_key);
        // Siemens: the position of tile 0 is the mosaic's, shifted by half the size
        // difference. UIH gives each slice's own position.
        let uih = meta.mosaic_grid.is_some();
        let shift = |p: [f64; 3]| -> [f64; 3] {
            if uih {
                return p;
            }
            let dc = (cols - ni) as f64 / 2.0 * spacing[1];
            let dr = (rows - nj) as f64 / 2.0 * spacing[0];
            [
                p[0] + rdir[0] * dc + cdir[0] * dr,
                p[1] + rdir[1] * dc + cdir[1] * dr,
                p[2] + rdir[2] * dc + cdir[2] * dr,
            ]
        };
        for e in &ents {
            frames.push(to_frame_ref(e, e.f.position.map(shift)));
            slots.push(Some(frames.len() - 1));
        }
        nt = frames.len();
        origin = frames[0].position.unwrap_or([0.0; 3]);
        slice_vec = match meta.mosaic_positions.as_slice() {
            [first, .., last] if meta.mosaic_positions.len() == nk => {
                [0, 1, 2].map(|r| (last[r] - first[r]) / (nk - 1) as f64)
            }
            _ => normal.map(|v| v * nominal_step),
        };
        let pos: Vec<[f64; 3]> = frames.iter().filter_map(|f| f.position).collect();
        if pos
            .iter()
            .any(|p| norm([p[0] - origin[0], p[1] - origin[1], p[2] - origin[2]]) > 0.01)
        {
            warnings.push("mosaic volumes have different positions (patient/table moved?)".into());
        }
    } else {
        ni = cols;
        nj = rows;
        // Cluster by distance along the normal.
        let dist = |e: &Entry| e.f.position.map(|p| dot(p, normal));
        if !from_tags {
            warnings.push(
                "no ImagePositionPatient/ImageOrientationPatient: nominal geometry (frames stacked in instance order)"
                    .into(),
            );
            ents.sort_by_key(|e| (e.h.instance_number.unwrap_or(i64::MIN), e.f.frame));
            for e in &ents {
                frames.push(to_frame_ref(e, e.f.position));
                slots.push(Some(frames.len() - 1));
            }
            nk = frames.len();
            nt = 1;
            origin = ents[0].f.position.unwrap_or([0.0; 3]);
            slice_vec = normal.map(|v| v * nominal_step);
        } else {
            ents.sort_by(|a, b| {
                dist(a)
                    .partial_cmp(&dist(b))
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| time_key(a).cmp(&time_key(b)))
            });
            let mut clusters: Vec<Vec<Entry>> = Vec::new();
            let mut start = f64::NEG_INFINITY;
            for e in ents {
                let d = dist(&e).unwrap_or(0.0);
                if clusters.is_empty() || d - start > 0.01 {
                    start = d;
                    clusters.push(Vec::new());
                }
                clusters.last_mut().unwrap().push(e);
            }
            for c in &mut clusters {
                c.sort_by_cached_key(time_key);
            }
            let cmin = clusters.iter().map(|c| c.len()).min().unwrap_or(0);
            let cmax = clusters.iter().map(|c| c.len()).max().unwrap_or(0);
            if cmin != cmax {
                let mut dropped = Vec::new();
                for c in &mut clusters {
                    for e in c.drain(cmin..) {
                        dropped.push(
                            e.h.instance_number
                                .map(|n| n.to_string())
                                .unwrap_or_else(|| "?".into()),
                        );
                    }
                }
                warnings.push(format!(
                    "slice positions have between {cmin} and {cmax} images each: incomplete volume(s); kept {cmin} volume(s), left out instance(s) {}",
                    dropped.join(",")
                ));
            }
            nt = cmin;
            // Slice spacing check / missing slices.
            let d: Vec<f64> = clusters
                .iter()
                .map(|c| dist(&c[0]).unwrap_or(0.0))
                .collect();
            let mut k_index: Vec<usize> = (0..d.len()).collect();
            let mut nk_total = d.len();
            if d.len() >= 3 {
                let mut diffs: Vec<f64> = d.windows(2).map(|w| w[1] - w[0]).collect();
                let raw = diffs.clone();
                diffs.sort_by(|a, b| a.partial_cmp(b).unwrap());
                let step = diffs[diffs.len() / 2];
                let tol = (step * 0.05).max(0.01);
                if raw.iter().any(|x| (x - step).abs() > tol) {
                    let ints: Vec<f64> = raw.iter().map(|x| (x / step).round()).collect();
                    let integral = raw
                        .iter()
                        .zip(&ints)
                        .all(|(x, n)| *n >= 1.0 && (x - n * step).abs() <= tol);
                    if integral {
                        let mut k = 0;
                        let mut missing = 0;
                        for (i, n) in ints.iter().enumerate() {
                            k += *n as usize;
                            missing += *n as usize - 1;
                            k_index[i + 1] = k;
                        }
                        nk_total = k + 1;
                        warnings.push(format!(
                            "missing slice(s): {missing} gap(s) in a series spaced {step:.4} mm; missing slices filled with zeros"
                        ));
                    } else {
                        let (mn, mx) = (diffs[0], diffs[diffs.len() - 1]);
                        warnings.push(format!(
                            "uneven slice spacing: between {mn:.4} and {mx:.4} mm (mean spacing used)"
                        ));
                    }
                }
            }
            nk = nk_total;
            slots = vec![None; nk * nt];
            for (ci, c) in clusters.iter().enumerate() {
                for (t, e) in c.iter().enumerate() {
                    frames.push(to_frame_ref(e, e.f.position));
                    slots[t * nk + k_index[ci]] = Some(frames.len() - 1);
                }
            }
            // Like dcm2niix: the slice vector is the step between the first
            // acquired slice (lowest InstanceNumber) and its neighbour, anchored
            // at that slice (gaps from missing slices are accounted for); with
            // irregular spacing, the mean step from the first slice.
            let pos = |ci: usize| clusters[ci][0].f.position.unwrap();
            let nc = clusters.len();
            let first_inst = |ci: usize| clusters[ci][0].h.instance_number.unwrap_or(i64::MAX);
            let irregular = nk == nc && nc >= 3 && warnings.iter().any(|w| w.starts_with("uneven"));
            if nk == 1 {
                origin = pos(0);
                slice_vec = normal.map(|v| v * nominal_step);
            } else if irregular {
                let (p0, pl) = (pos(0), pos(nc - 1));
                let s = (nk - 1) as f64;
                slice_vec = [0, 1, 2].map(|r| (pl[r] - p0[r]) / s);
                origin = p0;
            } else {
                let (a, b) = if first_inst(nc - 1) < first_inst(0) {
                    (nc - 1, nc - 2)
                } else {
                    (0, 1)
                };
                let (pa, pb) = (pos(a), pos(b));
                let dk = k_index[b] as f64 - k_index[a] as f64;
                slice_vec = [0, 1, 2].map(|r| (pb[r] - pa[r]) / dk);
                origin = [0, 1, 2].map(|r| pa[r] - k_index[a] as f64 * slice_vec[r]);
            }
            // Check all images share the in-plane geometry of the first.
            if clusters.iter().flatten().any(|e| {
                e.f.pixel_spacing.is_some_and(|s| {
                    (s[0] - spacing[0]).abs() > 1e-4 || (s[1] - spacing[1]).abs() > 1e-4
                })
            }) {
                warnings.push("PixelSpacing differs between images".into());
            }
        }
    }
    // Voxel → LPS, then LPS → RAS (negate x and y).
    let ci = [
        rdir[0] * spacing[1],
        rdir[1] * spacing[1],
        rdir[2] * spacing[1],
    ];
    let cj = [
        cdir[0] * spacing[0],
        cdir[1] * spacing[0],
        cdir[2] * spacing[0],
    ];
    let mut affine = [[0.0; 4]; 4];
    for r in 0..3 {
        let sign = if r < 2 { -1.0 } else { 1.0 };
        affine[r] = [
            sign * ci[r],
            sign * cj[r],
            sign * slice_vec[r],
            sign * origin[r],
        ];
    }
    affine[3] = [0.0, 0.0, 0.0, 1.0];
    if !from_tags {
        // Nominal geometry (NIfTI codes 0): voxel sizes only, rows stored bottom-up (see
        // `load`), so j points up; the same layout as dcm2niix's, with the spacing kept.
        affine = [
            [spacing[1], 0.0, 0.0, 0.0],
            [0.0, spacing[0], 0.0, -((nj as f64) - 1.0) * spacing[0]],
            [0.0, 0.0, nominal_step, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
    }
    let mut tss: Vec<String> = frames.iter().map(|f| f.transfer_syntax.clone()).collect();
    tss.sort();
    tss.dedup();
    Series {
        id,
        split_key,
        dims: [ni, nj, nk, nt],
        frames,
        slots,
        mosaic: meta.mosaic,
        geometry: Geometry {
            orientation: ori,
            pixel_spacing: spacing,
            affine,
            from_tags,
        },
        transfer_syntaxes: tss,
        warnings,
        meta,
    }
}

/// RAS axis codes ("LPS", "RAS"...) of an affine, like nibabel's aff2axcodes.
pub(crate) fn axcodes(a: &[[f64; 4]; 4]) -> String {
    (0..3)
        .map(|c| {
            let col = [a[0][c], a[1][c], a[2][c]];
            let (mut best, mut bv) = (0, 0.0);
            for (r, v) in col.iter().enumerate() {
                if v.abs() > bv {
                    bv = v.abs();
                    best = r;
                }
            }
            let pos = col[best] >= 0.0;
            match (best, pos) {
                (0, true) => 'R',
                (0, false) => 'L',
                (1, true) => 'A',
                (1, false) => 'P',
                (2, true) => 'S',
                _ => 'I',
            }
        })
        .collect()
}

fn plane_name(o: &[f64; 6]) -> &'static str {
    let n = cross([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    let a = n.map(f64::abs);
    let mx = a[0].max(a[1]).max(a[2]);
    if mx < 0.8 {
        "Obl"
    } else if a[2] == mx {
        "Tra"
    } else if a[0] == mx {
        "Sag"
    } else {
        "Cor"
    }
}

/// Summaries of the series found in `paths` (for `mindscan inspect`).
pub fn inspect(paths: &[PathBuf]) -> Vec<SeriesSummary> {
    scan(paths).series.iter().map(summarize).collect()
}

pub(crate) fn summarize(s: &Series) -> SeriesSummary {
    let a = &s.geometry.affine;
    let vs = |c: usize| (a[0][c].powi(2) + a[1][c].powi(2) + a[2][c].powi(2)).sqrt();
    SeriesSummary {
        id: s.id.clone(),
        name: s.output_name("%p_%s"),
        modality: s.meta.modality.clone(),
        series_number: s.meta.series_number,
        description: s.meta.series_description.clone(),
        file_count: s.file_count(),
        dims: s.dims,
        orientation: format!("{} {}", plane_name(&s.geometry.orientation), axcodes(a)),
        voxel_size: [vs(0), vs(1), vs(2)],
        transfer_syntaxes: s.transfer_syntaxes.clone(),
        mosaic: s.mosaic,
        warnings: s.warnings.clone(),
    }
}
