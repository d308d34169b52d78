//! `mindscan convert`: the one-liner for people who do not want YAML. It builds the same kind of
//! pipeline a user would write, so it behaves exactly like `mindscan run`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::config::{Loc, OnError, PipelineFile, StageConfig};

pub struct Request {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    /// `jpg`, `png` or `nifti`.
    pub format: &'static str,
    /// `axial`, `coronal`, `sagittal` or `all`.
    pub plane: &'static str,
    pub workers: Option<u32>,
    /// NIfTI output: `.nii.gz` (true) or `.nii`.
    pub compress: bool,
    /// DICOM inputs: the dcm2niix-like name template (`dicom.read`'s `name`).
    pub name: Option<String>,
    /// DICOM inputs: Philips floating-point scaling (true) or display scaling.
    pub philips_float: bool,
}

/// The output folder must exist (it is created) and take files, checked before any input is
/// read, so a wrong `--out` fails at once with its own exit status.
pub fn check_output(out: &Path) -> Result<()> {
    // An object store is reached when the first file goes up (the sinks stage locally).
    let shown = out.to_string_lossy();
    if shown.starts_with("s3://") || shown.starts_with("s3a://") {
        return Ok(());
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create the output folder", out.display()))?;
    let probe = mindscan_sdk::fsio::temp_path_for(&out.join("write-check"))?;
    std::fs::write(&probe, b"")
        .with_context(|| format!("{}: the output folder is not writable", out.display()))?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

fn is_nifti(p: &Path) -> bool {
    let n = p.to_string_lossy().to_ascii_lowercase();
    n.ends_with(".nii") || n.ends_with(".nii.gz")
}

/// NIfTI inputs when every input is a NIfTI file or a folder holding one; DICOM otherwise.
fn input_family(inputs: &[PathBuf]) -> &'static str {
    let nifti = inputs.iter().all(|p| {
        is_nifti(p)
            || (p.is_dir()
                && std::fs::read_dir(p)
                    .map(|rd| rd.filter_map(|e| e.ok()).any(|e| is_nifti(&e.path())))
                    .unwrap_or(false))
            || p.to_string_lossy().contains(".nii")
    });
    if nifti { "nifti" } else { "dicom" }
}

fn stage(id: &str, uses: &str, inputs: &[&str], params: Value, workers: u32) -> StageConfig {
    let params: BTreeMap<Loc<String>, Loc<Value>> = params
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (Loc::synthetic(k.clone()), Loc::synthetic(v.clone())))
                .collect()
        })
        .unwrap_or_default();
    StageConfig {
        id: Loc::synthetic(id.to_string()),
        uses: Loc::synthetic(uses.to_string()),
        inputs: inputs
            .iter()
            .map(|i| Loc::synthetic(i.to_string()))
            .collect(),
        params,
        workers: Loc::synthetic(workers),
        queue: None,
        max_in_flight: None,
        on_error: OnError::Skip,
        timeout: None,
    }
}

/// Builds the pipeline for a request.
pub fn pipeline(req: &Request) -> Result<PipelineFile> {
    if req.inputs.is_empty() {
        bail!("convert needs at least one input");
    }
    // Pipeline parameters are strings: a lossy name would be "no such file" for a file that is
    // there (exit 1), so say what is wrong instead (a folder walk reaches such files).
    if let Some(p) = req.inputs.iter().find(|p| p.to_str().is_none()) {
        bail!(
            "{}: the path is not valid UTF-8, which pipeline parameters cannot hold; pass the \
             folder holding it (folders are walked) or rename it",
            p.display()
        );
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(2);
    let workers = req.workers.unwrap_or(cores).max(1);
    let paths: Vec<String> = req.inputs.iter().map(|p| p.display().to_string()).collect();
    let out = req.out.display().to_string();
    let family = input_family(&req.inputs);
    let mut read_params = json!({ "paths": paths });
    if family == "dicom" {
        if let Some(name) = &req.name {
            read_params["name"] = json!(name);
        }
        if !req.philips_float {
            read_params["philips_scaling"] = json!("display");
        }
    } else if req.name.is_some() {
        bail!("--name (-f) names DICOM series; NIfTI inputs keep their file names");
    }
    // Several readers decode several files or series at once (one volume in memory each).
    let reader = stage("read", &format!("{family}.read"), &[], read_params, workers);
    let stages = match req.format {
        "nifti" => vec![
            reader,
            stage(
                "write",
                "nifti.write",
                &["read"],
                json!({ "out": out, "format": if req.compress { "nii.gz" } else { "nii" } }),
                workers,
            ),
        ],
        fmt => vec![
            reader,
            stage("window", "intensity.window", &["read"], json!({}), 1),
            stage(
                "slice",
                "volume.slice",
                &["window"],
                json!({ "plane": req.plane }),
                workers,
            ),
            stage(
                "write",
                "image.write",
                &["slice"],
                json!({ "out": out, "format": fmt }),
                workers,
            ),
        ],
    };
    Ok(PipelineFile {
        pipeline: Loc::synthetic("convert".into()),
        seed: 0,
        plugins: vec![],
        dead_letter: Some(req.out.join("dead-letter.jsonl").display().to_string()),
        state_dir: None,
        stages,
    })
}
