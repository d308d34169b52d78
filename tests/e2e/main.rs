//! End-to-end tests: the real binary, real plugin libraries, real data.

mod augment;
mod diffusion;
mod dicom;
mod engine_behaviour;
mod nifti_jpg;
mod plugins_dynamic;
mod tensors;
mod validation;
mod watch;
