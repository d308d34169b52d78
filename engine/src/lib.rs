//! The Mindscan engine: loads plugins, checks a YAML pipeline and runs it as a streaming DAG.
//!
//! - [`config`]: the pipeline file's types (also its JSON Schema);
//! - [`registry`]: linked and dynamically loaded plugins, ABI checks;
//! - [`plan`]: validation of a file against the registry into a runnable [`plan::Plan`];
//! - [`host`]: the host side of the ABI (stage instances, callbacks);
//! - [`runtime`]: threads, bounded queues, error policies, metrics;
//! - [`progress`], [`signals`]: what the user sees and how a run stops;
//! - [`commands`]: what each CLI subcommand does.

pub mod builtin;
pub mod commands;
pub mod config;
pub mod convert;
pub mod host;
pub mod inspect;
pub mod manifest;
pub mod plan;
pub mod progress;
pub mod registry;
pub mod runtime;
pub mod sharding;
pub mod signals;
