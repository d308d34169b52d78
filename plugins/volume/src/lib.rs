//! `volume.load`: the decoder of references (`dicom.scan`, `nifti.scan`, `watch.folder` with
//! `emit: references`, `queue.consume`), over the DICOM and NIfTI libraries.

pub mod load;

mindscan_sdk::plugin!(name: "volume", stages: [load::VolumeLoad]);
