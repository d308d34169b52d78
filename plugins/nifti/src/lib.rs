//! First-party NIfTI stages: `nifti.read` and `nifti.write`, on top of the pure [`format`] module.

pub mod format;
pub mod stages;

mindscan_sdk::plugin!(name: "nifti", stages: [stages::NiftiRead, stages::NiftiWrite]);
