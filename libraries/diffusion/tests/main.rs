//! The integration tests of this crate, as one test binary (one build and link instead of
//! one per file); run one file's tests with `cargo test -p PACKAGE --test diffusion FILE::`.

mod common;
mod sampling_parity;
mod schedule_parity;
mod unet_parity;
