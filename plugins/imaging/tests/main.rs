//! The integration tests of this crate, as one test binary (one build and link instead of
//! one per file); run one file's tests with `cargo test -p PACKAGE --test imaging FILE::`.

mod encode;
mod naming_manifest;
mod orientation;
mod perf;
mod resize;
mod window;
