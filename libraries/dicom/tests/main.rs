//! The integration tests of this crate, as one test binary (one build and link instead of
//! one per file); run one file's tests with `cargo test -p PACKAGE --test dicom FILE::`.

mod common;
mod dcm2niix_reference;
mod deidentification;
mod enhanced_multiframe;
mod ge_field_map;
mod philips_scaling;
mod pydicom_values;
mod references;
mod robustness;
mod sidecar_parity;
mod uih_grid;
