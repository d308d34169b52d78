//! First-party NIfTI stages: `nifti.read`, `nifti.scan` and `nifti.write`, on top of the `mindscan-nifti`
//! format library.

pub mod stages;

mindscan_sdk::plugin!(name: "nifti", stages: [stages::NiftiRead, stages::NiftiScan, stages::NiftiWrite]);
