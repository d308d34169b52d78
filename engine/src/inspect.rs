//! `mindscan inspect`: a header summary of a NIfTI file (DICOM files and folders are summarised
//! per series by [`inspect_dicom`]).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use mindscan_nifti::read_nifti_header;

fn is_nifti(p: &Path) -> bool {
    let n = p.to_string_lossy().to_ascii_lowercase();
    n.ends_with(".nii") || n.ends_with(".nii.gz")
}

pub fn inspect(path: &Path) -> Result<String> {
    if is_nifti(path) {
        inspect_nifti(path)
    } else {
        inspect_dicom(path)
    }
}

/// Axis codes (e.g. "LAS") of an affine: the world axis each voxel axis mostly points along.
fn axcodes(a: &[[f64; 4]; 4]) -> String {
    let mut taken = [false; 3];
    let mut out = String::new();
    for col in 0..3 {
        let mut best = (0usize, 0.0f64);
        for (row, t) in taken.iter().enumerate() {
            let v = a[row].get(col).copied().unwrap_or(0.0);
            if !t && v.abs() > best.1.abs() {
                best = (row, v);
            }
        }
        taken[best.0] = true;
        let c = match (best.0, best.1 >= 0.0) {
            (0, true) => 'R',
            (0, false) => 'L',
            (1, true) => 'A',
            (1, false) => 'P',
            (_, true) => 'S',
            (_, false) => 'I',
        };
        out.push(c);
    }
    out
}

/// The header only: no voxel is read or inflated, so a huge (or truncated) file prints at once.
fn inspect_nifti(path: &Path) -> Result<String> {
    let v = read_nifti_header(path)?;
    let mut s = String::new();
    writeln!(s, "file:        {}", path.display())?;
    writeln!(
        s,
        "format:      NIfTI-{}{}",
        v.version,
        if v.big_endian { " (big-endian)" } else { "" }
    )?;
    writeln!(s, "dimensions:  {:?}", v.dims)?;
    writeln!(s, "voxel size:  {:?}", v.pixdim)?;
    writeln!(s, "datatype:    {}", v.data.type_name())?;
    writeln!(s, "orientation: {}", axcodes(&v.affine))?;
    writeln!(
        s,
        "qform_code:  {}   sform_code: {}",
        v.qform_code, v.sform_code
    )?;
    match v.scaling() {
        Some((m, b)) => writeln!(s, "scaling:     value = raw * {m} + {b}")?,
        None => writeln!(s, "scaling:     none")?,
    }
    writeln!(s, "affine (voxel -> RAS mm):")?;
    for row in &v.affine {
        writeln!(
            s,
            "  [{:>10.4} {:>10.4} {:>10.4} {:>10.4}]",
            row[0], row[1], row[2], row[3]
        )?;
    }
    if !v.descrip.is_empty() {
        writeln!(s, "description: {}", v.descrip)?;
    }
    Ok(s)
}

/// DICOM files or folders: one block per series found (de-identified: hashed series UID,
/// protocol-based name, no patient, date or institution attributes), then unreadable files.
pub fn inspect_dicom(path: &Path) -> Result<String> {
    use mindscan_dicom::{scan, transfer_syntax_name};
    if !path.exists() && !path.to_string_lossy().contains(['*', '?', '[']) {
        anyhow::bail!("{}: no such file or folder", path.display());
    }
    let rep = scan(&[path.to_path_buf()]);
    if rep.series.is_empty() {
        let mut msg = format!(
            "{}: not a NIfTI file and no DICOM series found ({} file(s) skipped as non-DICOM)",
            path.display(),
            rep.skipped.len()
        );
        for e in &rep.errors {
            write!(msg, "\n  - {e}")?;
        }
        anyhow::bail!(msg);
    }
    let mut s = String::new();
    let files: usize = rep.series.iter().map(|x| x.file_count()).sum();
    writeln!(s, "input:       {}", path.display())?;
    writeln!(
        s,
        "format:      DICOM, {} series in {files} file(s); {} skipped (not DICOM), {} unreadable",
        rep.series.len(),
        rep.skipped.len(),
        rep.errors.len()
    )?;
    for (n, series) in rep.series.iter().enumerate() {
        let sum = mindscan_dicom::inspect_series(series);
        writeln!(s)?;
        writeln!(s, "series {}:   {}", n + 1, sum.name)?;
        writeln!(s, "  id:          {}", sum.id)?;
        if let Some(m) = &sum.modality {
            writeln!(s, "  modality:    {m}")?;
        }
        if let Some(d) = &sum.description {
            writeln!(s, "  description: {d}")?;
        }
        writeln!(s, "  files:       {}", sum.file_count)?;
        let [ni, nj, nk, nt] = sum.dims;
        if nt > 1 {
            writeln!(s, "  dimensions:  {ni} x {nj} x {nk} x {nt} volumes")?;
        } else {
            writeln!(s, "  dimensions:  {ni} x {nj} x {nk}")?;
        }
        let [a, b, c] = sum.voxel_size;
        writeln!(s, "  voxel size:  {a:.4} x {b:.4} x {c:.4} mm")?;
        writeln!(s, "  orientation: {}", sum.orientation)?;
        if let Some(m) = sum.mosaic {
            writeln!(s, "  mosaic:      {m} slices per image (Siemens)")?;
        }
        for ts in &sum.transfer_syntaxes {
            writeln!(s, "  transfer:    {ts} ({})", transfer_syntax_name(ts))?;
        }
        for w in &sum.warnings {
            writeln!(s, "  warning:     {w}")?;
        }
    }
    if !rep.errors.is_empty() {
        writeln!(s)?;
        writeln!(s, "unreadable files:")?;
        for e in &rep.errors {
            writeln!(s, "  - {e}")?;
        }
    }
    for w in &rep.warnings {
        writeln!(s, "warning: {w}")?;
    }
    Ok(s)
}
