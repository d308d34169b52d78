//! Times one UNet forward pass (median of several) and where the time goes.
//!
//! ```text
//! cargo run --release -p mindscan-diffusion --example unet_bench -- \
//!     --model pipelines/models/brain-ddpm-64 --size 64 --batch 8 --runs 5 [--threads 2]
//! cargo run --release -p mindscan-diffusion --example unet_bench -- --synthetic --size 128
//! ```
//! `--synthetic` builds the brain-ddpm-64 architecture (channels 32/64/64, attention at the
//! two lower levels, one res block, 64 head channels) with pseudo-random weights.
//! `--check IO.safetensors` runs on that file's `x`/`t` instead and compares with its `out`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mindscan_diffusion::unet::{UNet, UNetConfig, Workspace};

struct Args {
    model: Option<PathBuf>,
    size: usize,
    batch: usize,
    runs: usize,
    threads: usize,
    check: Option<PathBuf>,
}

fn parse() -> anyhow::Result<Args> {
    let mut args = Args {
        model: None,
        size: 64,
        batch: 8,
        runs: 5,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        check: None,
    };
    let mut synthetic = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => args.model = Some(value()?.into()),
            "--synthetic" => synthetic = true,
            "--size" => args.size = value()?.parse()?,
            "--batch" => args.batch = value()?.parse()?,
            "--runs" => args.runs = value()?.parse()?,
            "--threads" => args.threads = value()?.parse()?,
            "--check" => args.check = Some(value()?.into()),
            other => bail!("unknown argument {other} (see the example's doc comment)"),
        }
    }
    if synthetic == args.model.is_some() {
        bail!("give exactly one of --model DIR and --synthetic");
    }
    Ok(args)
}

fn read_f32s(
    file: &safetensors::SafeTensors,
    name: &str,
) -> anyhow::Result<(Vec<f32>, Vec<usize>)> {
    let v = file.tensor(name)?;
    let data = match v.dtype() {
        safetensors::Dtype::F32 => v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        safetensors::Dtype::I64 => v
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        other => bail!("{name}: unexpected dtype {other:?}"),
    };
    Ok((data, v.shape().to_vec()))
}

fn main() -> anyhow::Result<()> {
    let args = parse()?;
    let model = match &args.model {
        Some(dir) => UNet::load_dir(dir)?,
        None => UNet::random(UNetConfig::default(), 1)?,
    };
    let c = model.config().clone();
    let (mut n, mut h, mut w) = (args.batch, args.size, args.size);
    let mut x: Vec<f32> = (0..n * c.in_channels * h * w)
        .map(|i| ((i * 7919) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    let mut t: Vec<f32> = (0..n).map(|i| (i * 997 % 1000) as f32).collect();
    let mut labels: Option<Vec<u32>> = c
        .num_class_embeds
        .map(|k| (0..n).map(|i| (i % k) as u32).collect());
    let mut expected = None;
    if let Some(path) = &args.check {
        let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
        let file = safetensors::SafeTensors::deserialize(&bytes)?;
        let (xs, shape) = read_f32s(&file, "x")?;
        (x, n, h, w) = (xs, shape[0], shape[2], shape[3]);
        t = read_f32s(&file, "t")?.0;
        labels = read_f32s(&file, "class_labels")
            .ok()
            .map(|(l, _)| l.iter().map(|&v| v as u32).collect());
        expected = Some(read_f32s(&file, "out")?.0);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()?;
    let mut out = vec![0.0; n * c.out_channels * h * w];
    let mut ws = Workspace::new();
    let mut times = Vec::new();
    let mut cpu_start = None;
    pool.install(|| -> anyhow::Result<()> {
        // Warm-up: buffers are made on the first call.
        model.forward_into(&mut ws, &x, n, h, w, &t, labels.as_deref(), &mut out)?;
        ws.enable_profile();
        cpu_start = cpu_seconds();
        for _ in 0..args.runs {
            let t0 = Instant::now();
            model.forward_into(&mut ws, &x, n, h, w, &t, labels.as_deref(), &mut out)?;
            times.push(t0.elapsed());
        }
        Ok(())
    })?;
    let cpu = cpu_seconds()
        .zip(cpu_start)
        .map(|(end, start)| (end - start) / args.runs as f64);
    times.sort();
    let median = times[times.len() / 2];
    let source = args
        .model
        .as_ref()
        .map_or("synthetic".into(), |d| d.display().to_string());
    println!(
        "{source}: {h}x{w} batch {n}, {} threads: {:.1} ms per forward (median of {}; min {:.1}, max {:.1})",
        args.threads,
        ms(median),
        times.len(),
        ms(times[0]),
        ms(*times.last().unwrap())
    );
    if let Some(cpu) = cpu {
        // Less sensitive than wall time to other processes on the machine.
        println!(
            "  process CPU time {:.1} ms per forward (all threads)",
            cpu * 1e3
        );
    }
    let total: Duration = ws.profile().iter().map(|(_, d)| *d).sum();
    for (name, d) in ws.profile() {
        println!(
            "  {name:<30} {:>8.1} ms  {:>5.1} %",
            ms(d) / times.len() as f64,
            100.0 * d.as_secs_f64() / total.as_secs_f64()
        );
    }
    if let Some(want) = expected {
        let scale = want.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
        let diff = out
            .iter()
            .zip(&want)
            .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
        println!(
            "check: max |ours - torch| / max |torch| = {:.2e}",
            diff / scale
        );
    }
    Ok(())
}

/// User + system CPU time of this process (Linux `/proc/self/stat`), if readable.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
