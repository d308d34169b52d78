//! The `nifti.read` source and `nifti.write` sink.

use std::path::{Path, PathBuf};

use mindscan_sdk::naming::sanitize_component;
use mindscan_sdk::prelude::*;

use mindscan_nifti::item::{is_nifti, reference_item_named, stem, volume_item_named};
use mindscan_nifti::{self as format, NiftiVolume, OutputDatatype, VoxelData, WriteOptions};
use mindscan_sdk::inputs::expand_inputs;
use mindscan_storage::{Destination, localise_inputs, origin_of};

/// The files a source's `paths:` name: `s3://` prefixes are mirrored into the local cache
/// first (their NIfTI objects only).
fn nifti_files(paths: &[String]) -> Result<Vec<PathBuf>> {
    expand_inputs(&localise_inputs(paths, &is_nifti)?, is_nifti)
}

/// What a file is called in keys, manifests and references: the URL of a mirrored object,
/// else its path (so seeds and outputs do not depend on where the cache is).
fn name_of(path: &Path) -> String {
    origin_of(path).unwrap_or_else(|| path.display().to_string())
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// Files, folders (searched recursively for .nii / .nii.gz), glob patterns and `s3://`
    /// prefixes (mirrored into the local cache, `$MINDSCAN_CACHE`).
    pub paths: Vec<String>,
    /// Apply scl_slope/scl_inter (values become float32, like nibabel's get_fdata).
    #[serde(default = "yes")]
    pub apply_scaling: bool,
    /// Memory budget per file: the most bytes of voxel data (dims x bitpix, as the header
    /// claims) one volume may hold. A file claiming more is an item error, refused before
    /// anything is allocated or inflated (a small .nii.gz can claim gigabytes). Default 2 GiB.
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 1))]
    pub max_bytes: u64,
}

fn yes() -> bool {
    true
}

/// Default `max_bytes`: 2 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}

/// Reads NIfTI-1 and NIfTI-2 volumes (.nii, .nii.gz).
pub struct NiftiRead {
    files: Vec<PathBuf>,
    apply_scaling: bool,
    options: format::ReadOptions,
}

/// A read error; one over the memory budget also says how to raise it for this stage.
fn over_budget_hint(e: format::NiftiError, stage_id: &str) -> anyhow::Error {
    if matches!(e.kind, format::NiftiErrorKind::OverBudget { .. }) {
        anyhow::anyhow!(
            "{e} (nifti.read parameter `max_bytes`, in bytes: e.g. \
             --set {stage_id}.max_bytes=8589934592)"
        )
    } else {
        e.into()
    }
}

impl Stage for NiftiRead {
    type Params = ReadParams;
    const NAME: &'static str = "nifti.read";
    const ROLE: Role = Role::Source;
    const INPUTS: &'static [&'static str] = &[];
    const OUTPUTS: &'static [&'static str] = &[kinds::VOLUME];
    const DESCRIPTION: &'static str =
        "Read NIfTI-1/2 volumes (.nii, .nii.gz) from files, folders and globs";

    fn new(p: ReadParams, host: &Host) -> Result<Self> {
        let mut files = nifti_files(&p.paths)?;
        // A split run (`--shard`) keeps the files whose name hashes to this shard.
        let shard = host.shard();
        files.retain(|f| shard.keeps(&name_of(f)));
        if p.max_bytes == 0 {
            bail!("max_bytes must be at least 1");
        }
        Ok(NiftiRead {
            files,
            apply_scaling: p.apply_scaling,
            options: format::ReadOptions {
                max_bytes: Some(p.max_bytes),
            },
        })
    }

    fn produce(&self, ctx: &Context, out: &mut Emitter) -> Result<()> {
        if self.files.is_empty() {
            ctx.warn("no NIfTI files found in the given paths");
        }
        // Files are split round-robin over the workers; keys are the paths, so seeds and outputs
        // do not depend on which worker read a file.
        for path in self
            .files
            .iter()
            .skip(ctx.worker_index())
            .step_by(ctx.worker_count())
        {
            if ctx.is_cancelled() {
                break;
            }
            // Read only when the pipeline has room for one more volume (max_in_flight).
            out.wait_ready()?;
            let key = name_of(path);
            match format::read_nifti_with(path, &self.options)
                .map_err(|e| over_budget_hint(e, ctx.stage_id()))
                .and_then(|v| volume_item_named(path, &key, v, self.apply_scaling))
            {
                Ok(item) => out.emit(item)?,
                Err(e) => out.item_error(&key, &key, &e)?,
            }
        }
        Ok(())
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanParams {
    /// Files, folders (searched recursively for .nii / .nii.gz), glob patterns and `s3://`
    /// prefixes (mirrored into the local cache, `$MINDSCAN_CACHE`).
    pub paths: Vec<String>,
}

/// Finds NIfTI files and emits a reference to each (no voxels) for `volume.load`.
pub struct NiftiScan {
    files: Vec<PathBuf>,
}

impl Stage for NiftiScan {
    type Params = ScanParams;
    const NAME: &'static str = "nifti.scan";
    const ROLE: Role = Role::Source;
    const INPUTS: &'static [&'static str] = &[];
    const OUTPUTS: &'static [&'static str] = &[kinds::REFERENCE];
    const DESCRIPTION: &'static str =
        "Find NIfTI files (files, folders, globs) and emit a reference to each for volume.load";

    fn new(p: ScanParams, host: &Host) -> Result<Self> {
        let mut files = nifti_files(&p.paths)?;
        let shard = host.shard();
        files.retain(|f| shard.keeps(&name_of(f)));
        Ok(NiftiScan { files })
    }

    fn produce(&self, ctx: &Context, out: &mut Emitter) -> Result<()> {
        if self.files.is_empty() {
            ctx.warn("no NIfTI files found in the given paths");
        }
        for path in self
            .files
            .iter()
            .skip(ctx.worker_index())
            .step_by(ctx.worker_count())
        {
            if ctx.is_cancelled() {
                break;
            }
            out.emit(reference_item_named(path, &name_of(path)))?;
        }
        Ok(())
    }
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NiftiFormat {
    /// Uncompressed `.nii`.
    Nii,
    /// Gzip-compressed `.nii.gz`.
    #[serde(rename = "nii.gz")]
    NiiGz,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WriteDtype {
    /// The item's own data type.
    Keep,
    Float32,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteParams {
    /// Output folder, or an `s3://bucket/prefix` URL (each file is staged locally, then
    /// uploaded whole).
    pub out: String,
    #[serde(default = "default_format")]
    pub format: NiftiFormat,
    #[serde(default = "default_dtype")]
    pub dtype: WriteDtype,
    /// File name template without extension; tokens {stem}, {series}, {key}.
    #[serde(default = "default_name")]
    pub name: String,
    /// Gzip level 1 (fast) to 9 (small).
    #[serde(default = "default_level")]
    #[schemars(range(min = 1, max = 9))]
    pub gzip_level: u32,
}

fn default_format() -> NiftiFormat {
    NiftiFormat::NiiGz
}
fn default_dtype() -> WriteDtype {
    WriteDtype::Keep
}
fn default_name() -> String {
    "{stem}".into()
}
fn default_level() -> u32 {
    1
}

/// Writes volumes as NIfTI-1 (temporary name, then rename), with a JSON sidecar when the item
/// carries one (`sidecar` metadata, e.g. from DICOM).
pub struct NiftiWrite {
    out: Destination,
    params: WriteParams,
}

/// The file name (without extension) for a volume: the template with its tokens replaced by
/// sanitised values, then sanitised as a whole (the template's own text may hold separators or
/// a leading dot), so it is always one visible file in `out`.
fn output_name(template: &str, stem: &str, series: &str, key: &str) -> String {
    let name = template
        .replace("{stem}", &sanitize_component(stem))
        .replace("{series}", &sanitize_component(series))
        .replace("{key}", &sanitize_component(key));
    sanitize_component(&name)
}

/// The voxels of a volume tensor and the NIfTI dims they fill: RGB(A) bytes travel as a
/// trailing channel axis (channels-last) and become one RGB24/RGBA32 voxel each.
fn data_of(t: &Tensor) -> Result<(Vec<usize>, VoxelData)> {
    let shape = t.shape();
    if t.dtype() == DType::U8 && t.is_channels_last() && shape.len() >= 3 {
        let (&c, dims) = shape.split_last().unwrap_or((&1, &[]));
        let bytes = t.channels_last_bytes()?;
        let data = match c {
            3 => VoxelData::Rgb24(bytemuck::cast_slice::<u8, [u8; 3]>(bytes).to_vec()),
            4 => VoxelData::Rgba32(bytemuck::cast_slice::<u8, [u8; 4]>(bytes).to_vec()),
            _ => bail!("nifti.write: a channel axis of {c} is neither RGB nor RGBA"),
        };
        return Ok((dims.to_vec(), data));
    }
    Ok((shape.to_vec(), plain_data_of(t)?))
}

fn plain_data_of(t: &Tensor) -> Result<VoxelData> {
    if !t.is_f_contiguous() {
        bail!("nifti.write needs a volume in NIfTI voxel order (i fastest)");
    }
    Ok(match t.dtype() {
        DType::U8 => VoxelData::U8(t.as_slice::<u8>()?.to_vec()),
        DType::I8 => VoxelData::I8(t.as_slice::<i8>()?.to_vec()),
        DType::U16 => VoxelData::U16(t.as_slice::<u16>()?.to_vec()),
        DType::I16 => VoxelData::I16(t.as_slice::<i16>()?.to_vec()),
        DType::U32 => VoxelData::U32(t.as_slice::<u32>()?.to_vec()),
        DType::I32 => VoxelData::I32(t.as_slice::<i32>()?.to_vec()),
        DType::U64 => VoxelData::U64(t.as_slice::<u64>()?.to_vec()),
        DType::I64 => VoxelData::I64(t.as_slice::<i64>()?.to_vec()),
        DType::F32 => VoxelData::F32(t.as_slice::<f32>()?.to_vec()),
        DType::F64 => VoxelData::F64(t.as_slice::<f64>()?.to_vec()),
        DType::C64 => VoxelData::C64(t.as_slice::<[f32; 2]>()?.to_vec()),
        DType::C128 => VoxelData::C128(t.as_slice::<[f64; 2]>()?.to_vec()),
    })
}

impl Stage for NiftiWrite {
    type Params = WriteParams;
    const NAME: &'static str = "nifti.write";
    const ROLE: Role = Role::Sink;
    const INPUTS: &'static [&'static str] = &[kinds::VOLUME];
    const OUTPUTS: &'static [&'static str] = &[];
    const DESCRIPTION: &'static str =
        "Write volumes as NIfTI-1 (.nii or .nii.gz), affine and codes kept";

    fn new(params: WriteParams, host: &Host) -> Result<Self> {
        if !(1..=9).contains(&params.gzip_level) {
            bail!("gzip_level must be 1..9");
        }
        for tok in extract_tokens(&params.name) {
            if !["stem", "series", "key"].contains(&tok.as_str()) {
                bail!("unknown token {{{tok}}} in name (known: {{stem}}, {{series}}, {{key}})");
            }
        }
        let out = Destination::new(&params.out)?;
        // Temporaries of an earlier run that was killed before renaming them.
        host.remove_stale_temps(Self::NAME, out.root());
        Ok(NiftiWrite { out, params })
    }

    fn process(&self, _ctx: &Context, item: Item, _out: &mut Emitter) -> Result<()> {
        let t = item.data()?;
        let affine = item.meta.affine().context("volume has no affine")?;
        let (shape, data) = data_of(t)?;
        let mut vol = NiftiVolume::from_data(shape, data, affine);
        // Keep the codes the volume came with (dcm2niix and scanners write 1 = scanner).
        let codes: Option<serde_json::Value> = item.meta.get("nifti");
        if let Some(c) = codes {
            if let Some(q) = c.get("qform_code").and_then(|v| v.as_i64()) {
                vol.qform_code = q as i32;
            }
            if let Some(s) = c.get("sform_code").and_then(|v| v.as_i64()) {
                vol.sform_code = s as i32;
            }
            if c.get("scaling_applied").and_then(|v| v.as_bool()) == Some(false)
                && let (Some(m), Some(b)) = (
                    c.get("scl_slope").and_then(|v| v.as_f64()),
                    c.get("scl_inter").and_then(|v| v.as_f64()),
                )
            {
                vol.scl_slope = m;
                vol.scl_inter = b;
            }
            if let Some(x) = c.get("xyzt_units").and_then(|v| v.as_i64()) {
                vol.xyzt_units = x as i32;
            }
        }
        if let (Some(tr), true) = (item.meta.get::<f64>("frame_interval"), vol.pixdim.len() > 3) {
            vol.pixdim[3] = tr;
        }
        let stem_v = item
            .meta
            .str("stem")
            .map(String::from)
            .unwrap_or_else(|| stem(Path::new(item.meta.source().unwrap_or(item.key()))));
        let series = item.meta.str(keys::SERIES).unwrap_or("");
        let name = output_name(&self.params.name, &stem_v, series, item.key());
        let ext = match self.params.format {
            NiftiFormat::Nii => "nii",
            NiftiFormat::NiiGz => "nii.gz",
        };
        let dir = self.out.root();
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create output folder", dir.display()))?;
        let path = dir.join(format!("{name}.{ext}"));
        let opts = WriteOptions {
            gzip_level: self.params.gzip_level,
            datatype: match self.params.dtype {
                WriteDtype::Keep => OutputDatatype::Keep,
                WriteDtype::Float32 => OutputDatatype::Float32,
            },
            // Unique per process start, so a restarted run (pid 1 again in a container) can
            // tell its dead predecessor's temporaries from live ones.
            temp: Some(
                mindscan_sdk::fsio::temp_path_for(&path)
                    .with_context(|| format!("{}: no temporary name", path.display()))?,
            ),
            ..WriteOptions::default()
        };
        format::write_nifti_with(&path, &vol, &opts)?;
        // A volume and its sidecar go out together or not at all (a full disk can refuse the
        // second): the volume is taken back when its sidecar cannot be written.
        let mut written = vec![path.clone()];
        if let Some(sidecar) = item.meta.0.get("sidecar") {
            let json_path = dir.join(format!("{name}.json"));
            let bytes = serde_json::to_vec_pretty(sidecar)?;
            if let Err(e) = mindscan_sdk::fsio::write_atomic(&json_path, &bytes) {
                let _ = std::fs::remove_file(&path);
                return Err(anyhow::Error::new(e)
                    .context(format!("{}: cannot write sidecar", json_path.display())));
            }
            written.push(json_path);
        }
        for p in &written {
            self.out.commit(p)?;
        }
        Ok(())
    }
}

fn extract_tokens(template: &str) -> Vec<String> {
    let mut toks = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        toks.push(rest[start + 1..start + end].to_string());
        rest = &rest[start + end + 1..];
    }
    toks
}

#[cfg(test)]
mod naming_tests {
    use super::*;

    #[test]
    fn output_names_are_one_visible_file_whatever_the_input_is_called() {
        // `x.nii.gz` renamed `.nii.gz`: its stem is `.nii`.
        assert_eq!(output_name("{stem}", ".nii", "", "k"), "_nii");
        assert_eq!(output_name("{stem}", "..\\..\\NAME", "", "k"), "____NAME");
        assert_eq!(output_name("{stem}_{series}", "t1", "a/b", "k"), "t1_a_b");
        assert_eq!(output_name("../{key}", "t1", "", "x"), "__x");
        assert_eq!(output_name("{stem}", "sub-01_T1w", "", "k"), "sub-01_T1w");
    }
}
