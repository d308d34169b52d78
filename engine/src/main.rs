//! `mindscan`: run, check and explore Mindscan pipelines.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use mindscan_engine::commands::{self, Outcome, PluginSources, RunArgs};
use mindscan_engine::progress::Progress;
use mindscan_engine::{config, convert, inspect, signals};

#[derive(Parser)]
#[command(
    name = "mindscan",
    version,
    about = "Turn medical scans into AI-ready datasets"
)]
struct Cli {
    /// Extra folder (or file) of plugin libraries; repeatable. See also MINDSCAN_PLUGIN_PATH.
    #[arg(long = "plugin-dir", global = true, value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
    /// Only warnings and errors on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline.
    Run {
        pipeline: PathBuf,
        /// Override a parameter: STAGE_ID.PARAM=VALUE (VALUE is YAML). Repeatable.
        #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
        sets: Vec<String>,
        /// Write per-stage metrics as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        metrics_json: Option<PathBuf>,
        /// Never draw progress bars or progress lines.
        #[arg(long)]
        no_progress: bool,
        /// Take shard INDEX of COUNT of the inputs (by StudyInstanceUID for DICOM, by path for
        /// files), or `auto`: from a Slurm job array or a Kubernetes Indexed Job. Manifests are
        /// written as parts; `mindscan manifest merge` joins them.
        #[arg(long, value_name = "INDEX/COUNT|auto")]
        shard: Option<String>,
    },
    /// Check a pipeline (stages, parameters, edges) and report every problem at once.
    Validate {
        pipeline: PathBuf,
        #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
        sets: Vec<String>,
    },
    /// List the stages available, or show one stage's parameters and item kinds.
    Plugins { stage: Option<String> },
    /// Summarise a NIfTI file header, or the DICOM series in a file or folder.
    Inspect { file: PathBuf },
    /// Convert files without writing YAML (builds the same pipeline internally).
    ///
    /// Exit status: 0 all converted, 3 some inputs failed (each named at the end), 4 nothing
    /// converted (no DICOM/NIfTI found, or every input failed), 5 output folder not writable,
    /// 2 bad command line, 1 other failure.
    Convert {
        /// DICOM or NIfTI files, folders (searched recursively) and glob patterns.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output folder (created if missing).
        #[arg(long, short = 'o', value_name = "DIR")]
        out: PathBuf,
        /// What to write: JPG or PNG slices with a manifest, or NIfTI volumes with JSON sidecars.
        #[arg(long, value_enum, default_value_t = Format::Jpg)]
        format: Format,
        /// Slice plane for JPG/PNG.
        #[arg(long, value_enum, default_value_t = Plane::Axial)]
        plane: Plane,
        /// NIfTI only: gzip the output (`y`: .nii.gz, `n`: .nii), like dcm2niix -z.
        #[arg(long = "compress", short = 'z', value_enum, default_value_t = YesNo::Y)]
        compress: YesNo,
        /// DICOM only: output name template, like dcm2niix -f: %p protocol, %s series number,
        /// %d description, %m modality, %e echo number, %j hashed series UID.
        #[arg(long = "name", short = 'f', value_name = "TEMPLATE")]
        name: Option<String>,
        /// DICOM only: Philips private scaling, `y` the scanner's floating-point values (as
        /// dcm2niix -p y, the default), `n` the displayed values.
        #[arg(long = "philips-float", short = 'p', value_enum, default_value_t = YesNo::Y)]
        philips_float: YesNo,
        /// Worker threads for the heavy stages (default: all cores).
        #[arg(long)]
        workers: Option<u32>,
        /// Never draw progress bars or progress lines.
        #[arg(long)]
        no_progress: bool,
    },
    /// Print the JSON Schema of pipeline files (for editor completion).
    Schema,
    /// Dataset manifests.
    #[command(subcommand)]
    Manifest(ManifestCommand),
}

#[derive(Subcommand)]
enum ManifestCommand {
    /// Join the manifest parts of a split run (`run --shard`) in DIR into manifest.csv /
    /// manifest.jsonl, sorted by path; fails if a shard's part is missing or two shards wrote
    /// the same image.
    Merge { dir: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Jpg,
    Png,
    Nifti,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum YesNo {
    Y,
    N,
}

#[derive(Clone, Copy, ValueEnum)]
enum Plane {
    Axial,
    Coronal,
    Sagittal,
    All,
}

fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MINDSCAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .compact()
        .init();
}

fn finish(outcome: Outcome) -> ExitCode {
    match &outcome {
        Outcome::Ok => {}
        Outcome::Invalid(m) => eprintln!("{m}"),
        Outcome::Failed(m) => eprintln!("error: run failed: {m}"),
        Outcome::Partial(m) => eprintln!("error: {m}"),
        Outcome::NothingConverted(m) => eprintln!("error: nothing was converted; {m}"),
        Outcome::OutputUnwritable(m) => eprintln!("error: {m}"),
        Outcome::Interrupted => {
            eprintln!("stopped: interrupted; items in flight were finished and outputs flushed")
        }
    }
    ExitCode::from(outcome.exit_code())
}

fn progress(no_progress: bool, quiet: bool) -> Progress {
    if no_progress || quiet {
        Progress::Off
    } else {
        Progress::auto()
    }
}

/// Buffers of 1 MiB and more (volumes, compressed files) are mapped and unmapped by glibc on
/// their own, so a finished volume's memory goes back to the system at once. By default glibc
/// raises this threshold to the size of the largest buffer freed, after which volumes come from
/// per-thread heaps that keep their peak (measured: 200 MNI volumes peaked 8 MiB higher).
/// Setting it also fixes the heap's trim threshold at 128 KiB, so the small buffers of every
/// slice (pixels, JPEG bytes, histograms) were returned and faulted in again each time: 2 MiB
/// of slack per heap keeps them (T1 batch of 50: 90k -> 56k page faults, +1 MiB peak).
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 2 << 20);
    }
}

/// `--version` also names the JPEG encoder this build links (benchmarks record it).
fn parse_cli() -> Cli {
    let long_version = format!(
        "{} (JPEG: {})",
        env!("CARGO_PKG_VERSION"),
        mindscan_engine::builtin::JPEG_ENCODER
    );
    let matches = Cli::command()
        .long_version(&*Box::leak(long_version.into_boxed_str()))
        .get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    return_large_buffers_to_the_system();
    let cli = parse_cli();
    init_logging(cli.quiet);
    let sources = PluginSources {
        dirs: cli.plugin_dirs.clone(),
    };
    let result = (|| -> anyhow::Result<Outcome> {
        Ok(match cli.command {
            Command::Run {
                pipeline,
                sets,
                metrics_json,
                no_progress,
                shard,
            } => {
                let shard = match shard {
                    Some(spec) => {
                        match mindscan_engine::sharding::resolve(&spec, &|k| std::env::var(k).ok())
                        {
                            Ok(s) => s,
                            Err(e) => return Ok(Outcome::Invalid(format!("error: {e}"))),
                        }
                    }
                    None => mindscan_sdk::shard::Shard::ALL,
                };
                let (plan, _registry) = match commands::load_plan(&pipeline, &sets, &sources) {
                    Ok(p) => p,
                    Err(o) => return Ok(o),
                };
                let cancel = signals::install()?;
                let args = RunArgs {
                    progress: progress(no_progress, cli.quiet),
                    metrics_json,
                    cancel,
                    quiet: cli.quiet,
                    shard,
                };
                commands::run_plan(&plan, args)?.0
            }
            Command::Validate { pipeline, sets } => {
                match commands::load_plan(&pipeline, &sets, &sources) {
                    Ok((plan, _)) => {
                        println!(
                            "{}: ok ({} stages: {})",
                            pipeline.display(),
                            plan.stages.len(),
                            plan.stages
                                .iter()
                                .map(|s| s.id.as_str())
                                .collect::<Vec<_>>()
                                .join(" -> ")
                        );
                        Outcome::Ok
                    }
                    Err(o) => o,
                }
            }
            Command::Plugins { stage } => {
                let registry = commands::registry(&sources, None)?;
                match commands::describe_plugins(&registry, stage.as_deref()) {
                    Ok(text) => {
                        print!("{text}");
                        Outcome::Ok
                    }
                    Err(e) => Outcome::Invalid(format!("error: {e:#}")),
                }
            }
            Command::Inspect { file } => match inspect::inspect(&file) {
                Ok(text) => {
                    print!("{text}");
                    Outcome::Ok
                }
                Err(e) => Outcome::Failed(format!("{e:#}")),
            },
            Command::Convert {
                inputs,
                out,
                format,
                plane,
                compress,
                name,
                philips_float,
                workers,
                no_progress,
            } => {
                let request = convert::Request {
                    inputs,
                    out,
                    format: match format {
                        Format::Jpg => "jpg",
                        Format::Png => "png",
                        Format::Nifti => "nifti",
                    },
                    plane: match plane {
                        Plane::Axial => "axial",
                        Plane::Coronal => "coronal",
                        Plane::Sagittal => "sagittal",
                        Plane::All => "all",
                    },
                    workers,
                    compress: compress == YesNo::Y,
                    name,
                    philips_float: philips_float == YesNo::Y,
                };
                if let Err(e) = convert::check_output(&request.out) {
                    return Ok(Outcome::OutputUnwritable(format!("{e:#}")));
                }
                let file = match convert::pipeline(&request) {
                    Ok(f) => f,
                    Err(e) => return Ok(Outcome::Invalid(format!("error: {e:#}"))),
                };
                let registry = commands::registry(&sources, None)?;
                let plan = match mindscan_engine::plan::build(&file, &registry, "convert", None) {
                    Ok(p) => p,
                    Err(d) => return Ok(Outcome::Invalid(d.to_string())),
                };
                let cancel = signals::install()?;
                let args = RunArgs {
                    progress: progress(no_progress, cli.quiet),
                    metrics_json: None,
                    cancel,
                    quiet: cli.quiet,
                    shard: mindscan_sdk::shard::Shard::ALL,
                };
                commands::run_plan(&plan, args)?.0
            }
            Command::Schema => {
                println!("{}", serde_json::to_string_pretty(&config::json_schema())?);
                Outcome::Ok
            }
            Command::Manifest(ManifestCommand::Merge { dir }) => {
                for m in mindscan_engine::manifest::merge(&dir)? {
                    println!(
                        "{}: {} rows from {} shards",
                        m.path.display(),
                        m.rows,
                        m.parts
                    );
                }
                Outcome::Ok
            }
        })
    })();
    match result {
        Ok(o) => finish(o),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
