//! DDIM sampling throughput, the Mindscan side of `bench/diffusion/run.sh`:
//!
//!   cargo run --release -p mindscan-diffusion --example ddim_bench -- \
//!       --model pipelines/models/brain-ddpm-64 --size 64 --batch 8 --steps 50 --threads 2 --runs 3 --json
//!
//! Prints the median wall time of one full DDIM run (noise → images) over `--runs` runs.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use mindscan_diffusion::sampler::{Batch, PhiloxNoise, Sampling};
use mindscan_diffusion::schedule::{Plan, SamplerKind, Scheduler, SchedulerConfig};
use mindscan_diffusion::unet::UNet;

struct Args {
    model: PathBuf,
    size: usize,
    batch: usize,
    steps: usize,
    threads: usize,
    runs: usize,
    json: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        model: PathBuf::from("pipelines/models/brain-ddpm-64"),
        size: 64,
        batch: 8,
        steps: 50,
        threads: 0,
        runs: 3,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = value()?.into(),
            "--size" => a.size = value()?.parse()?,
            "--batch" => a.batch = value()?.parse()?,
            "--steps" => a.steps = value()?.parse()?,
            "--threads" => a.threads = value()?.parse()?,
            "--runs" => a.runs = value()?.parse()?,
            "--json" => a.json = true,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let a = args()?;
    let threads = if a.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        a.threads
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let model = UNet::load_dir(&a.model)?;
    let text = std::fs::read_to_string(a.model.join("config.json"))?;
    let card: serde_json::Value = serde_json::from_str(&text)?;
    let sched: SchedulerConfig = match card.get("scheduler") {
        Some(s) => serde_json::from_value(s.clone())?,
        None => SchedulerConfig::default(),
    };
    let plan = Plan::new(
        Scheduler::new(sched)?,
        SamplerKind::Ddim { eta: 0.0 },
        a.steps,
    )?;
    let batch = Batch {
        n: a.batch,
        c: model.config().in_channels,
        h: a.size,
        w: a.size,
    };
    let seeds: Vec<u64> = (0..a.batch as u64).collect();
    let mut times = Vec::new();
    for _ in 0..a.runs {
        let start = Instant::now();
        let x = pool.install(|| {
            Sampling {
                model: &model,
                plan: &plan,
                batch,
                class_labels: None,
            }
            .from_noise(&mut PhiloxNoise::new(&seeds), None)
        })?;
        times.push(start.elapsed().as_secs_f64());
        std::hint::black_box(x);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let images_per_s = a.batch as f64 / median;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "impl": "mindscan", "size": a.size, "batch": a.batch, "steps": a.steps,
                "threads": threads, "seconds": median, "images_per_s": images_per_s,
                "forward_ms": median / a.steps as f64 * 1e3, "runs": times,
            })
        );
    } else {
        println!(
            "mindscan DDIM-{} {}x{} batch {}: {:.3} s ({:.2} images/s, {:.1} ms per forward)",
            a.steps,
            a.size,
            a.size,
            a.batch,
            median,
            images_per_s,
            median / a.steps as f64 * 1e3
        );
    }
    Ok(())
}
