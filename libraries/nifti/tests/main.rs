//! The integration tests of this crate, as one test binary (one build and link instead of
//! one per file); run one file's tests with `cargo test -p PACKAGE --test nifti FILE::`.

mod budget;
mod buffer_reuse;
mod common;
mod corrupt;
mod datatypes;
mod fixtures;
mod roundtrip;
