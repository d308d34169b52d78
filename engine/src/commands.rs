//! What each CLI subcommand does, as plain functions the binary and the tests call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context as _, Result, bail};

use crate::config::{self, PipelineFile};
use crate::plan::{self, Plan};
use crate::progress::{Progress, summary_table};
use crate::registry::Registry;
use crate::runtime::{self, RunOptions, RunReport};

/// Where plugins come from besides the built-in ones.
#[derive(Default, Clone)]
pub struct PluginSources {
    pub dirs: Vec<PathBuf>,
}

/// Builds the registry: built-in plugins, then `MINDSCAN_PLUGIN_PATH`, `--plugin-dir`, and the
/// pipeline's own `plugins:` list (relative to the pipeline file).
pub fn registry(
    sources: &PluginSources,
    file: Option<(&PipelineFile, Option<&Path>)>,
) -> Result<Registry> {
    let mut r = Registry::with_builtin()?;
    r.load_env()?;
    for d in &sources.dirs {
        r.load_path(d)?;
    }
    if let Some((file, path)) = file {
        for p in &file.plugins {
            let resolved = config::resolve_relative(path, &p.value);
            r.load_path(&resolved).with_context(|| {
                format!(
                    "{}:{}:{}: plugin listed here could not be loaded",
                    path.map(|p| p.display().to_string()).unwrap_or_default(),
                    p.line,
                    p.column
                )
            })?;
        }
    }
    Ok(r)
}

/// Exit status of a command, with what to print. The codes are documented in the README.
pub enum Outcome {
    Ok,
    /// The pipeline or the command line is wrong (status 2).
    Invalid(String),
    /// The run failed (status 1).
    Failed(String),
    /// Some inputs failed or were skipped, the rest went through (status 3).
    Partial(String),
    /// No input went through: none found, or every one failed (status 4).
    NothingConverted(String),
    /// The output folder cannot be created or written (status 5).
    OutputUnwritable(String),
    /// Stopped by Ctrl-C / SIGTERM after a graceful stop (status 130).
    Interrupted,
}

impl Outcome {
    /// The process exit status.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Ok => 0,
            Outcome::Failed(_) => 1,
            Outcome::Invalid(_) => 2,
            Outcome::Partial(_) => 3,
            Outcome::NothingConverted(_) => 4,
            Outcome::OutputUnwritable(_) => 5,
            Outcome::Interrupted => 130,
        }
    }
}

/// How many failed inputs the closing summary names (the metrics JSON has more).
const SUMMARY_LISTED: usize = 50;

/// The closing summary of a run in which inputs failed: each input and the reason.
fn failure_summary(report: &RunReport) -> String {
    let total = report.total_errors();
    let mut s = format!("{total} input(s) failed or were skipped:");
    for f in report.failed_inputs.iter().take(SUMMARY_LISTED) {
        let reason = f.reason.lines().next().unwrap_or("");
        s.push_str(&format!("\n  - {} ({}): {reason}", f.input, f.stage));
    }
    let listed = report.failed_inputs.len().min(SUMMARY_LISTED) as u64;
    if total > listed {
        s.push_str(&format!(
            "\n  ... and {} more (the log and --metrics-json have them)",
            total - listed
        ));
    }
    s
}

/// Loads, overrides and validates a pipeline file.
pub fn load_plan(
    path: &Path,
    sets: &[String],
    sources: &PluginSources,
) -> Result<(Plan, Registry), Outcome> {
    let mut file = config::load(path).map_err(|e| Outcome::Invalid(e.to_string()))?;
    config::apply_overrides(&mut file, sets).map_err(Outcome::Invalid)?;
    let registry = registry(sources, Some((&file, Some(path))))
        .map_err(|e| Outcome::Invalid(format!("{e:#}")))?;
    let plan = plan::build(&file, &registry, &path.display().to_string(), Some(path))
        .map_err(|d| Outcome::Invalid(d.to_string()))?;
    Ok((plan, registry))
}

pub struct RunArgs {
    pub progress: Progress,
    pub metrics_json: Option<PathBuf>,
    pub cancel: Arc<AtomicBool>,
    pub quiet: bool,
    /// This process's shard of the inputs (`--shard`).
    pub shard: mindscan_sdk::shard::Shard,
}

/// Runs a plan, prints the summary, writes metrics; returns the outcome.
pub fn run_plan(plan: &Plan, args: RunArgs) -> Result<(Outcome, RunReport)> {
    let report = runtime::run(
        plan,
        RunOptions {
            cancel: args.cancel,
            progress: args.progress,
            cuda_device: None,
            shard: args.shard,
        },
    )?;
    if !args.quiet {
        eprintln!("{}", summary_table(&report.stages, report.wall_seconds));
    }
    if let Some(p) = &args.metrics_json {
        let json = serde_json::to_vec_pretty(&report)?;
        mindscan_sdk::fsio::write_atomic(p, &json)
            .with_context(|| format!("{}: cannot write metrics", p.display()))?;
    }
    Ok((outcome_of(&report), report))
}

/// The outcome of a finished run: failed, interrupted, some inputs lost, nothing through, ok.
pub fn outcome_of(report: &RunReport) -> Outcome {
    if let Some(f) = &report.failure {
        Outcome::Failed(f.clone())
    } else if report.cancelled {
        Outcome::Interrupted
    } else if report.total_errors() == 0 {
        Outcome::Ok
    } else if report.items_produced() == 0
        || report
            .stages
            .iter()
            .filter(|s| s.role == "sink")
            .all(|s| s.items_in == s.errors)
    {
        Outcome::NothingConverted(failure_summary(report))
    } else {
        Outcome::Partial(failure_summary(report))
    }
}

/// `mindscan plugins [STAGE]`.
pub fn describe_plugins(registry: &Registry, stage: Option<&str>) -> Result<String> {
    let mut out = String::new();
    match stage {
        None => {
            for s in registry.stages() {
                out.push_str(&format!(
                    "{:<20} {:<9} {:>10} -> {:<10} {} [{} {}, {}]\n",
                    s.name,
                    s.role.as_str(),
                    if s.inputs.is_empty() {
                        "-".into()
                    } else {
                        s.inputs.join("|")
                    },
                    if s.outputs.is_empty() {
                        "-".into()
                    } else {
                        s.outputs.join("|")
                    },
                    s.description,
                    s.plugin.name,
                    s.plugin.version,
                    s.plugin.origin
                ));
            }
        }
        Some(name) => {
            let Some(s) = registry.get(name) else {
                let near = registry.close_names(name);
                bail!(
                    "unknown stage '{name}'{}",
                    if near.is_empty() {
                        String::new()
                    } else {
                        format!("; did you mean {}?", near.join(" or "))
                    }
                );
            };
            out.push_str(&format!("{} — {}\n", s.name, s.description));
            out.push_str(&format!(
                "role: {}\ntakes: {}\ngives: {}\nplugin: {} {} ({})\nparameters:\n",
                s.role.as_str(),
                if s.inputs.is_empty() {
                    "-".into()
                } else {
                    s.inputs.join(", ")
                },
                if s.outputs.is_empty() {
                    "-".into()
                } else {
                    s.outputs.join(", ")
                },
                s.plugin.name,
                s.plugin.version,
                s.plugin.origin
            ));
            out.push_str(&describe_params(&s.schema));
        }
    }
    Ok(out)
}

fn describe_params(schema: &serde_json::Value) -> String {
    let mut out = String::new();
    let required: Vec<&str> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
        return "  (none)\n".into();
    };
    for (name, p) in props {
        let ty = p
            .get("type")
            .map(|t| t.to_string().replace('"', ""))
            .or_else(|| p.get("enum").map(|e| format!("one of {e}")))
            .or_else(|| {
                p.get("$ref")
                    .map(|r| r.to_string().replace('"', "").replace("#/$defs/", ""))
            })
            .unwrap_or_else(|| "value".into());
        let default = p
            .get("default")
            .map(|d| format!(" (default {d})"))
            .unwrap_or_default();
        let req = if required.contains(&name.as_str()) {
            " (required)"
        } else {
            ""
        };
        let desc = p.get("description").and_then(|d| d.as_str()).unwrap_or("");
        out.push_str(&format!("  {name}: {ty}{req}{default}\n"));
        if !desc.is_empty() {
            out.push_str(&format!("      {}\n", desc.replace('\n', "\n      ")));
        }
    }
    out
}
