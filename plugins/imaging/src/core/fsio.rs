//! Atomic file writes (shared with the SDK so every stage writes files the same way).

pub use mindscan_sdk::fsio::*;
