//! The SDK `volume` item a DICOM series becomes, and the naming that comes before it: shared
//! by every stage that decodes series (`dicom.read`, the watch source). The rest of this crate
//! uses nothing of the SDK but its folder walker.
//!
//! What reaches the item is de-identified: `key` and `series` are the hashed
//! SeriesInstanceUID, `source` is the folder holding the files (never a file path: some
//! exporters name files after the patient), `sidecar` has no PS3.15 E.1 attribute unless
//! allow-listed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mindscan_sdk::prelude::*;
use mindscan_sdk::reference::Reference;
use mindscan_sdk::tensor::channels_last_strides;

use crate::{
    DeidOptions, DicomVolume, LoadOptions, PHI_KEYWORDS, Series, VoxelData, load_series_lenient,
    load_series_with,
};

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

/// Builds the `volume` item of a decoded series (the layout `nifti.read` produces).
pub fn volume_item(p: &Planned, vol: DicomVolume) -> Item {
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

/// The `reference` item of a planned series: its files and identity, no pixels (see
/// [`mindscan_sdk::reference`]); [`resolve`] turns it back into a [`Planned`] series.
pub fn reference_item(p: &Planned) -> Item {
    let mut files: Vec<String> = Vec::new();
    for f in &p.series.frames {
        let f = f.path.display().to_string();
        if !files.contains(&f) {
            files.push(f);
        }
    }
    let study = crate::hash_uid(p.series.shard_key(), "");
    Reference::Series {
        id: p.series.id.clone(),
        split: p.series.split_key.clone(),
        study,
        files,
        dims: p.series.dims,
        warnings: p.series.warnings.clone(),
    }
    .into_item(&p.series.id, &p.source, &p.stem)
}

/// The series a reference names, from its files' headers read again (the files may be on
/// another machine than the scan, and may have changed since): the split with the reference's
/// grouping key, which must still have the reference's shape.
pub fn resolve(r: &Reference, stem: &str, source: &str) -> Result<Planned> {
    let Reference::Series {
        id,
        split,
        files,
        dims,
        warnings,
        ..
    } = r
    else {
        bail!("not a DICOM series reference: {}", r.describe());
    };
    if files.is_empty() {
        bail!("series {id}: the reference lists no file");
    }
    let paths: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    let rep = crate::scan_with(&paths, Vec::new());
    if let Some(e) = rep.errors.first() {
        bail!("series {id}: {e}");
    }
    if let Some(s) = rep.skipped.first() {
        bail!(
            "series {id}: {} is no longer a DICOM image: {}",
            s.path.display(),
            s.reason
        );
    }
    // `2.25.<hash>` of the SeriesInstanceUID, without a split's `.n`.
    let uid_hash = |id: &str| id.split('.').take(3).collect::<Vec<_>>().join(".");
    let mut found = rep
        .series
        .into_iter()
        .filter(|s| uid_hash(&s.id) == uid_hash(id))
        .collect::<Vec<_>>();
    let pick = if found.len() == 1 {
        found.pop()
    } else {
        found.into_iter().find(|s| &s.split_key == split)
    };
    let Some(mut series) = pick else {
        bail!("series {id}: its files no longer hold that series (changed since discovery?)");
    };
    if &series.dims != dims {
        bail!(
            "series {id}: its files now give {:?}, the reference says {:?} (changed since discovery?)",
            series.dims,
            dims
        );
    }
    series.id = id.clone();
    series.warnings = warnings.clone();
    Ok(Planned {
        series,
        stem: stem.to_string(),
        source: source.to_string(),
    })
}
