//! DICOM ingestion: the pure [`core`] library and the `dicom.read` source stage.

pub mod core;
pub mod stages;

mindscan_sdk::plugin!(name: "dicom", stages: [stages::DicomRead]);
