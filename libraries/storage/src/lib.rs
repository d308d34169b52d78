//! Storage for Mindscan's stages: local paths as before, and S3-compatible object stores named
//! by `s3://bucket/prefix` URLs (through the `object_store` crate).
//!
//! The format code reads and writes local files (memory-mapped, seeked, renamed), so an object
//! store is met at the edges: inputs are mirrored into a local cache before a source scans them
//! ([`mirror`]), and a sink writes into a local staging folder, then publishes each finished file
//! as one object ([`Destination`]). An object appears only whole: a single PUT, or a multipart
//! upload completed after its last part (aborted on any failure).
//!
//! Credentials and endpoint come from the usual `AWS_*` environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` /
//! `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` for S3-compatible servers, `AWS_ALLOW_HTTP=true` for
//! plain HTTP); messages name buckets and keys, never credentials.

mod destination;
pub mod mirror;
mod remote;

pub use destination::Destination;
pub use mirror::{fetch, localise_inputs, origin_of};
pub use remote::{Remote, is_url};
