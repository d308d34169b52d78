//! The `dicom.read` and `dicom.scan` source stages, on top of the `mindscan-dicom` library.

pub mod stages;

mindscan_sdk::plugin!(name: "dicom", stages: [stages::DicomRead, stages::DicomScan]);
