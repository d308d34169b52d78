//! The schedules, timesteps and single scheduler steps against MONAI 1.6's own numbers.

use crate::common::{Fixture, rel_err};
use mindscan_diffusion::schedule::{Plan, SamplerKind, ScheduleName, Scheduler, SchedulerConfig};

fn config(schedule: ScheduleName) -> SchedulerConfig {
    SchedulerConfig {
        schedule,
        ..SchedulerConfig::default()
    }
}

#[test]
fn beta_tables_match_monai() {
    let f = Fixture::open("schedules.safetensors");
    for (name, schedule) in [
        ("linear_beta", ScheduleName::LinearBeta),
        ("scaled_linear_beta", ScheduleName::ScaledLinearBeta),
        ("sigmoid_beta", ScheduleName::SigmoidBeta),
        ("cosine", ScheduleName::Cosine),
    ] {
        let s = Scheduler::new(config(schedule)).unwrap();
        for (table, ours) in [
            ("betas", &s.tables.betas),
            ("alphas", &s.tables.alphas),
            ("alphas_cumprod", &s.tables.alphas_cumprod),
        ] {
            let theirs = f.f32(&format!("{name}.{table}"));
            // Elementwise relative error (ᾱ spans nine decades), except that the cosine
            // schedule's β = 1 − ᾱ_t/ᾱ_{t−1} cancels to ~4e-5: one ulp of torch's vectorised
            // cos (SLEEF) moves it by ~1e-3 relative, so those compare in absolute terms, a
            // few f32 ulps of 1 (numpy's cos differs from torch's by as much).
            let worst = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| {
                    let d = (a - b).abs() as f64;
                    if name == "cosine" && table != "alphas_cumprod" {
                        d
                    } else {
                        d / (b.abs() as f64).max(1e-30)
                    }
                })
                .fold(0f64, f64::max);
            assert!(worst <= 1e-6, "{name}.{table}: worst error {worst:e}");
        }
    }
}

#[test]
fn inference_timesteps_match_monai() {
    let f = Fixture::open("schedules.safetensors");
    for n in [10usize, 50, 7, 1000] {
        for offset in [0usize, 1] {
            let s = Scheduler::new(SchedulerConfig {
                steps_offset: offset,
                ..SchedulerConfig::default()
            })
            .unwrap();
            let p = Plan::new(s, SamplerKind::Ddim { eta: 0.0 }, n).unwrap();
            assert_eq!(
                p.timesteps,
                f.i64(&format!("ddim.timesteps.{n}.offset{offset}")),
                "ddim {n} offset {offset}"
            );
        }
    }
    for n in [20usize, 1000] {
        let s = Scheduler::new(SchedulerConfig::default()).unwrap();
        let p = Plan::new(s, SamplerKind::Ddpm, n).unwrap();
        assert_eq!(
            p.timesteps,
            f.i64(&format!("ddpm.timesteps.{n}")),
            "ddpm {n}"
        );
    }
}

#[test]
fn rel_err_is_a_real_measure() {
    assert_eq!(rel_err(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
    assert!(rel_err(&[1.0, 2.1], &[1.0, 2.0]) > 0.04);
}

fn step_config(case: &serde_json::Value) -> SchedulerConfig {
    let mut cfg = SchedulerConfig {
        prediction_type: serde_json::from_value(case["prediction_type"].clone()).unwrap(),
        clip_sample: case["clip"].as_bool().unwrap(),
        ..SchedulerConfig::default()
    };
    if let Some(v) = case["variance_type"].as_str() {
        cfg.variance_type = serde_json::from_value(serde_json::json!(v)).unwrap();
    }
    if let Some(a) = case["set_alpha_to_one"].as_bool() {
        cfg.set_alpha_to_one = a;
    }
    if let Some(o) = case["steps_offset"].as_u64() {
        cfg.steps_offset = o as usize;
    }
    cfg
}

/// Every single-step case MONAI wrote (DDPM variances, DDIM eta, the three prediction types,
/// clipping, the last steps where ᾱ_prev is 1): x_{t−1} and x̂₀ within 1e-6 of MONAI's.
#[test]
fn single_steps_match_monai() {
    let f = Fixture::open("steps.safetensors");
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate::common::fixtures().join("steps.json")).unwrap(),
    )
    .unwrap();
    let (sample, model_output) = (f.f32("sample"), f.f32("model_output"));
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    for case in cases {
        let prefix = case["prefix"].as_str().unwrap();
        let cfg = step_config(case);
        let s = Scheduler::new(cfg).unwrap();
        let plan = match case["sampler"].as_str().unwrap() {
            "ddpm" => Plan::new(s, SamplerKind::Ddpm, 1000).unwrap(),
            _ => {
                let eta = case["eta"].as_f64().unwrap() as f32;
                let n = case["num_inference_steps"].as_u64().unwrap() as usize;
                Plan::new(s, SamplerKind::Ddim { eta }, n).unwrap()
            }
        };
        let t = case["timestep"].as_i64().unwrap();
        let noise = if case["noise"].as_bool().unwrap() {
            f.f32(&format!("{prefix}.noise"))
        } else {
            Vec::new()
        };
        assert_eq!(
            plan.needs_noise(t),
            !noise.is_empty(),
            "{prefix}: whether noise is drawn"
        );
        let out = plan.step(&model_output, t, &sample, &noise).unwrap();
        for (name, ours) in [
            ("prev_sample", &out.prev_sample),
            ("pred_original_sample", &out.pred_original),
        ] {
            let e = rel_err(ours, &f.f32(&format!("{prefix}.{name}")));
            assert!(e <= 1e-6, "{prefix}.{name}: relative error {e:e}");
        }
    }
}

/// q(x_t | x₀) and the v target, per image at its own timestep.
#[test]
fn add_noise_and_velocity_match_monai() {
    let f = Fixture::open("steps.safetensors");
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate::common::fixtures().join("steps.json")).unwrap(),
    )
    .unwrap();
    for case in cases["add_noise"].as_array().unwrap() {
        let schedule: ScheduleName = serde_json::from_value(case["schedule"].clone()).unwrap();
        let s = Scheduler::new(config(schedule)).unwrap();
        let key = |k: &str| case[k].as_str().unwrap().to_string();
        let (x0, noise, ts) = (
            f.f32(&key("x0")),
            f.f32(&key("noise")),
            f.i64(&key("timesteps")),
        );
        let per = x0.len() / ts.len();
        let (mut noisy, mut velocity) = (vec![0f32; x0.len()], vec![0f32; x0.len()]);
        for (i, &t) in ts.iter().enumerate() {
            let r = i * per..(i + 1) * per;
            s.add_noise(&x0[r.clone()], &noise[r.clone()], t, &mut noisy[r.clone()])
                .unwrap();
            s.velocity(&x0[r.clone()], &noise[r.clone()], t, &mut velocity[r])
                .unwrap();
        }
        assert!(
            rel_err(&noisy, &f.f32(&key("noisy"))) <= 1e-6,
            "{schedule:?} add_noise"
        );
        assert!(
            rel_err(&velocity, &f.f32(&key("velocity"))) <= 1e-6,
            "{schedule:?} velocity"
        );
    }
}
