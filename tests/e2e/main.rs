//! End-to-end tests: the real binary, real plugin libraries, real data.

mod augment;
mod corrupt;
mod dicom;
mod diffusion;
mod engine_behaviour;
mod hardening;
mod nifti_jpg;
mod output_safety;
mod plugins_dynamic;
mod queue;
mod references;
mod shards;
mod storage;
mod tensors;
mod validation;
mod walls;
mod watch;
