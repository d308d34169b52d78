//! First-party NIfTI stages: `nifti.read` and `nifti.write`, on top of the `mindscan-nifti`
//! format library.

pub mod stages;

mindscan_sdk::plugin!(name: "nifti", stages: [stages::NiftiRead, stages::NiftiWrite]);
