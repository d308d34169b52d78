//! Whole sampling runs against MONAI: a 10-step DDIM and a 20-step DDPM trajectory of the
//! bundled brain model from the same noise (tools/make_fixtures.py), and the samples' quality.

use crate::common::{Fixture, brain_model, rel_err};
use mindscan_diffusion::sampler::{Batch, NoiseSource, PhiloxNoise, Sampling};
use mindscan_diffusion::schedule::{Plan, SamplerKind, Scheduler, SchedulerConfig};
use mindscan_diffusion::unet::UNet;

fn scheduler() -> Scheduler {
    let text = std::fs::read_to_string(brain_model().join("config.json")).unwrap();
    let card: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cfg: SchedulerConfig = serde_json::from_value(card["scheduler"].clone()).unwrap();
    Scheduler::new(cfg).unwrap()
}

/// Noise read from a fixture: the start x_T and, per step, what MONAI's `torch.randn` drew.
struct Recorded {
    start: Vec<f32>,
    steps: Vec<f32>,
    image_len: usize,
    n: usize,
}

impl NoiseSource for Recorded {
    fn start(&mut self, image: usize, out: &mut [f32]) -> anyhow::Result<()> {
        let l = self.image_len;
        out.copy_from_slice(&self.start[image * l..(image + 1) * l]);
        Ok(())
    }
    fn step(&mut self, image: usize, index: usize, _t: i64, out: &mut [f32]) -> anyhow::Result<()> {
        let l = self.image_len;
        let at = (index * self.n + image) * l;
        out.copy_from_slice(&self.steps[at..at + l]);
        Ok(())
    }
}

fn trajectory(file: &str, kind: SamplerKind, steps: usize) {
    let f = Fixture::open(file);
    let model = UNet::load_dir(&brain_model()).unwrap();
    let plan = Plan::new(scheduler(), kind, steps).unwrap();
    assert_eq!(plan.timesteps, f.i64("timesteps"), "{file}: timesteps");
    let shape = f.shape("noise");
    let batch = Batch {
        n: shape[0],
        c: shape[1],
        h: shape[2],
        w: shape[3],
    };
    let mut noise = Recorded {
        start: f.f32("noise"),
        steps: if f.has("step_noise") {
            f.f32("step_noise")
        } else {
            Vec::new()
        },
        image_len: batch.image_len(),
        n: batch.n,
    };
    let expected = f.f32("samples");
    let mut worst = 0f64;
    let mut on_step = |i: usize, t: i64, x: &[f32]| {
        let want = &expected[i * x.len()..(i + 1) * x.len()];
        let e = rel_err(x, want);
        worst = worst.max(e);
        assert!(e <= 1e-3, "{file}: step {i} (t={t}) off by {e:e}");
    };
    let x = Sampling {
        model: &model,
        plan: &plan,
        batch,
        class_labels: None,
    }
    .from_noise(&mut noise, Some(&mut on_step))
    .unwrap();
    assert_eq!(x.len(), batch.len());
    eprintln!("{file}: worst relative error along the trajectory {worst:e}");
}

#[test]
fn ddim_10_steps_follows_monai() {
    trajectory(
        "brain.ddim10.safetensors",
        SamplerKind::Ddim { eta: 0.0 },
        10,
    );
}

#[test]
fn ddpm_20_steps_follows_monai_with_its_noise() {
    trajectory("brain.ddpm20.safetensors", SamplerKind::Ddpm, 20);
}

fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (
        a.iter().map(|&v| v as f64).sum::<f64>() / n,
        b.iter().map(|&v| v as f64).sum::<f64>() / n,
    );
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    sab / (saa * sbb).sqrt()
}

/// The bundled model makes brains, not noise: the mean of 64 samples correlates with the mean
/// training slice, while the mean of the 64 starting noises does not.
#[test]
fn samples_of_the_bundled_model_look_like_its_training_data() {
    let model = UNet::load_dir(&brain_model()).unwrap();
    let mean = Fixture::at(brain_model().join("mean_slice.safetensors")).f32("mean");
    let plan = Plan::new(scheduler(), SamplerKind::Ddim { eta: 0.0 }, 20).unwrap();
    let batch = Batch {
        n: 16,
        c: 1,
        h: 64,
        w: 64,
    };
    let mut sample_mean = vec![0f32; 64 * 64];
    let mut noise_mean = vec![0f32; 64 * 64];
    for b in 0..4u64 {
        let seeds: Vec<u64> = (0..16).map(|i| b * 16 + i).collect();
        let x = Sampling {
            model: &model,
            plan: &plan,
            batch,
            class_labels: None,
        }
        .from_noise(&mut PhiloxNoise::new(&seeds), None)
        .unwrap();
        let mut start = vec![0f32; 64 * 64];
        let mut philox = PhiloxNoise::new(&seeds);
        for (i, img) in x.chunks_exact(64 * 64).enumerate() {
            philox.start(i, &mut start).unwrap();
            for p in 0..64 * 64 {
                sample_mean[p] += img[p] / 64.0;
                noise_mean[p] += start[p] / 64.0;
            }
        }
    }
    let r = pearson(&sample_mean, &mean);
    let r_noise = pearson(&noise_mean, &mean);
    eprintln!("correlation with the mean training slice: samples {r:.3}, noise {r_noise:.3}");
    assert!(
        r > 0.5,
        "samples correlate only {r:.3} with the training mean"
    );
    assert!(
        r_noise.abs() < 0.2,
        "noise correlates {r_noise:.3}: the test cannot tell"
    );
}
