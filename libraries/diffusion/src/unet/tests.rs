//! Whole-model checks that need no fixture: the architecture bookkeeping for every option.

use super::weights::WeightStore;
use super::{PerLevel, UNet, UNetConfig, Workspace};

fn variants() -> Vec<UNetConfig> {
    let base = UNetConfig {
        channels: vec![8, 16, 24],
        attention_levels: vec![false, true, true],
        num_res_blocks: PerLevel::Each(vec![1, 2, 1]),
        num_head_channels: PerLevel::All(8),
        norm_num_groups: 4,
        in_channels: 3,
        out_channels: 2,
        ..UNetConfig::default()
    };
    vec![
        base.clone(),
        UNetConfig {
            resblock_updown: true,
            num_class_embeds: Some(4),
            ..base.clone()
        },
        UNetConfig {
            use_combined_linear: true,
            include_fc: false,
            num_res_blocks: PerLevel::All(2),
            ..base.clone()
        },
        UNetConfig {
            channels: vec![8],
            attention_levels: vec![true],
            num_res_blocks: PerLevel::All(1),
            ..base
        },
    ]
}

/// MONAI's `sum(p.numel() for p in DiffusionModelUNet(...).parameters())` for the default
/// (brain-ddpm-64) architecture.
#[test]
fn the_default_config_has_monais_parameter_count() {
    assert_eq!(UNetConfig::default().parameter_count(), 1_163_105);
}

/// With all-zero weights every layer's shapes line up and the output (the last conv's bias)
/// is zero, for each combination of options and for one level only.
#[test]
fn every_option_builds_and_runs_with_zero_weights() {
    for config in variants() {
        config.validate().unwrap();
        let store = WeightStore::zeros();
        let net = super::model::Network::load(&config, &store.root()).unwrap();
        let model = UNet::new(config.clone(), net);
        let (n, h, w) = (2, 8, 12);
        let x = vec![0.5; n * config.in_channels * h * w];
        let labels = config.num_class_embeds.map(|_| vec![1, 3]);
        let out = model
            .forward(&x, n, h, w, &[3.0, 700.0], labels.as_deref())
            .unwrap();
        assert_eq!(out.len(), n * config.out_channels * h * w);
        assert!(out.iter().all(|&v| v == 0.0));
    }
}

/// Random weights: a batch gives each image what it gives that image alone, and the workspace
/// may be reused across shapes.
#[test]
fn images_of_a_batch_do_not_affect_each_other() {
    for config in variants() {
        let labels = config.num_class_embeds.map(|_| vec![0u32, 2, 3]);
        let (cin, cout) = (config.in_channels, config.out_channels);
        let model = UNet::random(config, 7).unwrap();
        let (n, h, w) = (3, 8, 4);
        let x: Vec<f32> = (0..n * cin * h * w)
            .map(|i| ((i * 7919) % 113) as f32 / 56.0 - 1.0)
            .collect();
        let t = [10.0, 500.0, 999.0];
        let mut ws = Workspace::new();
        let mut all = vec![0.0; n * cout * h * w];
        model
            .forward_into(&mut ws, &x, n, h, w, &t, labels.as_deref(), &mut all)
            .unwrap();
        for i in 0..n {
            let mut one = vec![0.0; cout * h * w];
            let xi = &x[i * cin * h * w..(i + 1) * cin * h * w];
            let li = labels.as_ref().map(|l| vec![l[i]]);
            model
                .forward_into(&mut ws, xi, 1, h, w, &t[i..i + 1], li.as_deref(), &mut one)
                .unwrap();
            let want = &all[i * cout * h * w..(i + 1) * cout * h * w];
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let diff = one
                .iter()
                .zip(want)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                scale > 0.0 && diff <= 1e-5 * scale,
                "image {i}: {diff} vs {scale}"
            );
        }
    }
}

/// The model is shared between sampler threads; each thread keeps its own workspace.
#[test]
fn the_model_is_send_and_sync_and_a_workspace_is_send() {
    fn shared<T: Send + Sync>() {}
    fn owned<T: Send>() {}
    shared::<UNet>();
    owned::<Workspace>();
}
