//! The `dicom.read` source stage, on top of the `mindscan-dicom` library.

pub mod stages;

mindscan_sdk::plugin!(name: "dicom", stages: [stages::DicomRead]);
