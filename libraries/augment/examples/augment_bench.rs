//! Seconds per volume of each transform with TorchIO's default parameters, for
//! bench/augment/run.sh (which runs TorchIO and MONAI on the same volume in the same run).
//!
//!   augment_bench --input mni.f32 --meta mni.json [--runs 5] [--json] [--only affine,elastic]
//!                 [--device cpu|cuda]      (cuda: plans the GPU has kernels for)
//!   augment_bench --synthetic 197x233x189 ...  (a smooth phantom, for machines without the dump)
//!
//! Every run draws a new variant (new random parameters, as TorchIO does) and runs it the way
//! the `augment` stage does (`exec::run_borrowed`: a copy of the input only where a plan
//! starts by changing voxels in place).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use mindscan_augment::{Geometry, TransformSpec, Volume, cuda, draw, exec};
use mindscan_cuda::{DeviceRequest, Resolved};

const CASES: &[(&str, &str)] = &[
    ("affine", r#"[{"affine": {}}]"#),
    ("elastic", r#"[{"elastic": {}}]"#),
    ("bias_field", r#"[{"bias_field": {}}]"#),
    ("motion", r#"[{"motion": {}}]"#),
    ("ghosting", r#"[{"ghosting": {}}]"#),
    ("spike", r#"[{"spike": {}}]"#),
    ("blur", r#"[{"blur": {}}]"#),
    ("noise", r#"[{"noise": {}}]"#),
    ("gamma", r#"[{"gamma": {}}]"#),
    ("flip", r#"[{"flip": {}}]"#),
    ("flip_always", r#"[{"flip": {"flip_probability": 1.0}}]"#),
    ("anisotropy", r#"[{"anisotropy": {}}]"#),
    ("swap", r#"[{"swap": {}}]"#),
    (
        "compose5",
        r#"[{"affine": {}}, {"bias_field": {}}, {"noise": {}}, {"gamma": {}}, {"flip": {}}]"#,
    ),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let mut input = None;
    let mut meta = None;
    let mut runs = 5usize;
    let mut json = false;
    let mut only: Option<Vec<String>> = None;
    let mut device = DeviceRequest::Cpu;
    let mut synthetic: Option<[usize; 3]> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--input" => input = args.next(),
            "--meta" => meta = args.next(),
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--json" => json = true,
            "--device" => device = args.next().context("--device cpu|cuda")?.parse()?,
            "--synthetic" => {
                let d: Vec<usize> = args
                    .next()
                    .context("--synthetic NIxNJxNK")?
                    .split('x')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
                synthetic = Some([d[0], d[1], d[2]]);
            }
            "--only" => {
                only = Some(
                    args.next()
                        .context("--only a,b")?
                        .split(',')
                        .map(String::from)
                        .collect(),
                )
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let vol = match synthetic {
        Some(dims) => phantom(dims)?,
        None => read_dump(&input.context("--input")?, &meta.context("--meta")?)?,
    };
    let dims = vol.dims;
    let device = mindscan_cuda::resolve(device)?;
    eprintln!("device: {device}");
    let geo = Geometry {
        dims,
        affine: &vol.affine,
        labels: None,
    };
    let threads = rayon::current_num_threads();
    let emit = |name: &str, secs: f64| {
        if json {
            println!(
                "{}",
                serde_json::json!({"tool": "mindscan", "transform": name, "seconds": secs,
                                   "runs": runs, "threads": threads})
            );
        } else {
            println!("{name:12} {secs:.4} s");
        }
    };
    let wanted = |n: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == n));
    if wanted("copy") {
        let t: Vec<f64> = (0..runs.max(3))
            .map(|_| {
                let t0 = Instant::now();
                let c = mindscan_augment::volume::copied(&vol.data);
                std::hint::black_box(&c);
                t0.elapsed().as_secs_f64()
            })
            .collect();
        emit("copy", median(t));
    }
    for (name, spec) in CASES {
        if !wanted(name) {
            continue;
        }
        let specs: Vec<TransformSpec> = serde_json::from_str(spec)?;
        // One warm-up, then `runs` timed draws.
        let mut times = Vec::new();
        for r in 0..=runs {
            let plan = draw(&specs, 2026, r as u32, &geo)?;
            let t0 = Instant::now();
            let out = match &device {
                Resolved::Cuda(gpu) if cuda::unsupported(&plan).is_none() => {
                    let stream = gpu.stream()?;
                    cuda::run(gpu, &stream, &plan, &vol, None)?.0
                }
                Resolved::Cuda(_) => {
                    eprintln!("{name}: no CUDA kernel yet, skipped");
                    break;
                }
                Resolved::Cpu { .. } => exec::run_borrowed(&plan, &vol, None)?.0,
            };
            std::hint::black_box(&out);
            if r > 0 {
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        if !times.is_empty() {
            emit(name, median(times));
        }
    }
    Ok(())
}

fn read_dump(input: &str, meta: &str) -> Result<Volume> {
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(meta)?)?;
    let dims: [usize; 3] = serde_json::from_value(m["shape"].clone())?;
    let affine: [[f64; 4]; 4] = serde_json::from_value(m["affine_ras"].clone())?;
    let bytes = std::fs::read(input).with_context(|| format!("{input}: cannot read"))?;
    let data = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Volume::new(data, dims, affine)
}

/// A smooth ellipsoid with some texture, 1 mm voxels.
fn phantom(dims: [usize; 3]) -> Result<Volume> {
    let mut data = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let u = [i, j, k].map(|x| x as f32);
                let c = dims.map(|n| n as f32 / 2.0);
                let r2: f32 = (0..3)
                    .map(|a| ((u[a] - c[a]) / (0.4 * dims[a] as f32)).powi(2))
                    .sum();
                let v = if r2 < 1.0 {
                    100.0 + 20.0 * (u[0] * 0.3).sin() * (u[1] * 0.2).cos()
                } else {
                    0.0
                };
                data.push(v);
            }
        }
    }
    let affine = [
        [1.0, 0.0, 0.0, -(dims[0] as f64) / 2.0],
        [0.0, 1.0, 0.0, -(dims[1] as f64) / 2.0],
        [0.0, 0.0, 1.0, -(dims[2] as f64) / 2.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    Volume::new(data, dims, affine)
}
