//! `mindscan inspect`: a header summary of a NIfTI file (DICOM files and folders are summarised
//! per series by [`inspect_dicom`]).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use mindscan_plugin_nifti::format::read_nifti;

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
            let v = a[row][col];
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

fn inspect_nifti(path: &Path) -> Result<String> {
    let v = read_nifti(path)?;
    let mut s = String::new();
    writeln!(s, "file:        {}", path.display())?;
    writeln!(s, "format:      NIfTI-{}{}", v.version, if v.big_endian { " (big-endian)" } else { "" })?;
    writeln!(s, "dimensions:  {:?}", v.dims)?;
    writeln!(s, "voxel size:  {:?}", v.pixdim)?;
    writeln!(s, "datatype:    {}", v.data.type_name())?;
    writeln!(s, "orientation: {}", axcodes(&v.affine))?;
    writeln!(s, "qform_code:  {}   sform_code: {}", v.qform_code, v.sform_code)?;
    match v.scaling() {
        Some((m, b)) => writeln!(s, "scaling:     value = raw * {m} + {b}")?,
        None => writeln!(s, "scaling:     none")?,
    }
    writeln!(s, "affine (voxel -> RAS mm):")?;
    for row in &v.affine {
        writeln!(s, "  [{:>10.4} {:>10.4} {:>10.4} {:>10.4}]", row[0], row[1], row[2], row[3])?;
    }
    if !v.descrip.is_empty() {
        writeln!(s, "description: {}", v.descrip)?;
    }
    Ok(s)
}

/// DICOM files or folders: one line per series found.
pub fn inspect_dicom(path: &Path) -> Result<String> {
    anyhow::bail!(
        "{}: not a NIfTI file (.nii / .nii.gz); DICOM inspection is not available in this build",
        path.display()
    )
}
