//! Behaviour of each transform on a real brain volume (nibabel's anatomical.nii).

mod common;

use common::input;
use mindscan_augment::exec::{self, warp};
use mindscan_augment::plan::{Applied, Plan};
use mindscan_augment::spec::{Centre, Interpolation, NoiseKind, PadValue, TransformSpec};
use mindscan_augment::{Geometry, Volume, draw};

fn plan(seed: u64, transforms: Vec<Applied>) -> Plan {
    Plan {
        seed,
        variant: 0,
        transforms,
    }
}

fn affine(scales: [f64; 3], degrees: [f64; 3], translation: [f64; 3]) -> Applied {
    Applied::Affine {
        scales,
        degrees,
        translation,
        center: Centre::Image,
        default_pad_value: PadValue::Value(0.0),
        interpolation: Interpolation::Linear,
    }
}

fn geometry(v: &Volume) -> Geometry<'_> {
    Geometry {
        dims: v.dims,
        affine: &v.affine,
        labels: None,
    }
}

fn specs(yaml_json: &str) -> Vec<TransformSpec> {
    serde_json::from_str(yaml_json).unwrap()
}

#[test]
fn identity_parameters_give_the_input_back() {
    let v = input();
    let identity = vec![
        affine([1.0; 3], [0.0; 3], [0.0; 3]),
        Applied::Gamma { gamma: 1.0 },
        Applied::BiasField {
            order: 3,
            coefficients: vec![0.0; 20],
        },
        Applied::Noise {
            slot: 0,
            mean: 0.0,
            std: 0.0,
            kind: NoiseKind::Gaussian,
        },
        Applied::Flip { axes: vec![] },
    ];
    for t in identity {
        let name = t.name();
        let (out, _) = exec::run(&plan(1, vec![t]), v.clone(), None).unwrap();
        assert_eq!(
            out.data, v.data,
            "{name} with identity parameters changed voxels"
        );
        assert_eq!(out.affine, v.affine);
    }
}

#[test]
fn flipping_twice_is_the_identity_and_once_mirrors_the_array() {
    let v = input();
    let once = exec::run(
        &plan(0, vec![Applied::Flip { axes: vec![0, 2] }]),
        v.clone(),
        None,
    )
    .unwrap()
    .0;
    let [ni, _, nk] = v.dims;
    assert_eq!(
        once.data[once.index(0, 5, 0)],
        v.data[v.index(ni - 1, 5, nk - 1)]
    );
    let twice = exec::run(
        &plan(0, vec![Applied::Flip { axes: vec![0, 2] }]),
        once,
        None,
    )
    .unwrap()
    .0;
    assert_eq!(twice.data, v.data);
    // A flip fused with an affine resamples through exact integer coordinates.
    let fused = exec::run(
        &plan(
            0,
            vec![
                Applied::Flip { axes: vec![1] },
                Applied::Flip { axes: vec![1] },
                affine([1.0; 3], [0.0; 3], [0.0; 3]),
            ],
        ),
        v.clone(),
        None,
    )
    .unwrap()
    .0;
    assert_eq!(fused.data, v.data);
}

#[test]
fn an_affine_and_its_inverse_round_trip_within_interpolation_error() {
    let v = input();
    let c = v.centre_world();
    let m = warp::affine_map([1.1, 0.95, 1.0], [8.0, -4.0, 12.0], [3.0, -2.0, 1.0], c);
    let there = warp::resample_world(&v, &m, Interpolation::Linear, 0.0);
    let inv = mindscan_augment::volume::invert(&m);
    let moved = Volume::new(there, v.dims, v.affine).unwrap();
    let back = warp::resample_world(&moved, &inv, Interpolation::Linear, 0.0);
    // Compare inside the brain, away from borders that left the field of view.
    let (lo, hi) = v.min_max();
    let mut err = 0f64;
    let mut n = 0usize;
    for k in 6..v.dims[2] - 6 {
        for j in 8..v.dims[1] - 8 {
            for i in 8..v.dims[0] - 8 {
                let idx = v.index(i, j, k);
                err += (back[idx] - v.data[idx]).abs() as f64;
                n += 1;
            }
        }
    }
    let mean_err = err / n as f64 / (hi - lo) as f64;
    assert!(
        mean_err < 0.03,
        "mean round-trip error {mean_err} of the range"
    );
}

#[test]
fn the_output_affine_is_the_input_grid_and_world_points_move_as_asked() {
    // A translation of +4 mm along R: the anatomy that was at world x sits at x + 4.
    let v = input();
    let (out, _) = exec::run(
        &plan(0, vec![affine([1.0; 3], [0.0; 3], [4.0, 0.0, 0.0])]),
        v.clone(),
        None,
    )
    .unwrap();
    assert_eq!(out.affine, v.affine);
    // This volume is LAS with 2 mm voxels: +4 mm R is 2 voxels towards lower i.
    let src = v.index(20, 20, 12);
    let dst = out.index(18, 20, 12);
    assert_eq!(out.data[dst], v.data[src]);
}

#[test]
fn gaussian_noise_has_the_requested_standard_deviation() {
    let v = Volume::new(vec![100.0; 64 * 64 * 32], [64, 64, 32], input().affine).unwrap();
    let (out, _) = exec::run(
        &plan(
            9,
            vec![Applied::Noise {
                slot: 3,
                mean: 0.5,
                std: 2.0,
                kind: NoiseKind::Gaussian,
            }],
        ),
        v,
        None,
    )
    .unwrap();
    let n = out.len() as f64;
    let mean = out.data.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = out
        .data
        .iter()
        .map(|&x| (x as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!((mean - 100.5).abs() < 0.02, "mean {mean}");
    assert!((var.sqrt() - 2.0).abs() < 0.01, "std {}", var.sqrt());
}

#[test]
fn rician_noise_is_never_negative_and_lifts_the_background() {
    let v = Volume::new(vec![0.0; 32 * 32 * 16], [32, 32, 16], input().affine).unwrap();
    let (out, _) = exec::run(
        &plan(
            2,
            vec![Applied::Noise {
                slot: 0,
                mean: 0.0,
                std: 1.0,
                kind: NoiseKind::Rician,
            }],
        ),
        v,
        None,
    )
    .unwrap();
    assert!(out.data.iter().all(|&x| x >= 0.0));
    // The magnitude of complex N(0, 1) noise is Rayleigh: mean sqrt(pi / 2).
    let mean = out.data.iter().map(|&x| x as f64).sum::<f64>() / out.len() as f64;
    assert!(
        (mean - (std::f64::consts::PI / 2.0).sqrt()).abs() < 0.02,
        "mean {mean}"
    );
}

#[test]
fn gamma_is_monotonic() {
    let mut v = input();
    v.data.sort_by(f32::total_cmp);
    for gamma in [0.6, 1.4] {
        let (out, _) =
            exec::run(&plan(0, vec![Applied::Gamma { gamma }]), v.clone(), None).unwrap();
        assert!(out.data.windows(2).all(|w| w[0] <= w[1]), "gamma {gamma}");
    }
}

#[test]
fn the_bias_field_is_smooth_and_positive() {
    let ones = Volume::new(vec![1.0; 33 * 41 * 25], [33, 41, 25], input().affine).unwrap();
    let geo = geometry(&ones);
    let p = draw(&specs(r#"[{"bias_field": {}}]"#), 5, 0, &geo).unwrap();
    let (field, _) = exec::run(&p, ones.clone(), None).unwrap();
    assert!(field.data.iter().all(|&b| b > 0.0 && b.is_finite()));
    // Neighbouring voxels differ by a few percent at most: a smooth field.
    for k in 0..25 {
        for j in 0..41 {
            for i in 1..33 {
                let (a, b) = (
                    field.data[field.index(i - 1, j, k)],
                    field.data[field.index(i, j, k)],
                );
                assert!((a / b - 1.0).abs() < 0.2, "jump {a} -> {b}");
            }
        }
    }
}

#[test]
fn elastic_displacement_never_exceeds_its_maximum() {
    for (seed, max) in [(1u64, 7.5f64), (2, 3.0), (3, 12.0)] {
        let f = warp::ElasticField::draw(seed, 0, 0, [7, 7, 7], [max; 3], 2, false);
        assert!(f.coef.iter().flatten().all(|d| d.abs() <= max));
        // Locked borders: the two outer control points of every axis stay put.
        for (idx, c) in f.coef.iter().enumerate() {
            let (i, j, k) = (idx % 7, (idx / 7) % 7, idx / 49);
            let edge = |x: usize| x <= 1 || x >= 5;
            if edge(i) || edge(j) || edge(k) {
                assert_eq!(*c, [0.0; 3]);
            }
        }
        // Displacements of a ramp image recover the displacement at each voxel: since B-spline
        // weights are positive and sum to one, no voxel moves further than the maximum.
        let v = input();
        let ramp = Volume::new(
            (0..v.len())
                .map(|n| (n % v.dims[0]) as f32 + 100.0)
                .collect(),
            v.dims,
            v.affine,
        )
        .unwrap();
        let plan = plan(
            seed,
            vec![Applied::Elastic {
                slot: 0,
                num_control_points: [7; 3],
                max_displacement: [max; 3],
                locked_borders: 2,
                interpolation: Interpolation::Linear,
            }],
        );
        let (out, _) = exec::run(&plan, ramp.clone(), None).unwrap();
        let spacing = v.spacing()[0];
        // Samples that left the field of view take the pad value (the minimum, 100).
        for (a, b) in out
            .data
            .iter()
            .zip(&ramp.data)
            .filter(|(a, _)| **a != 100.0)
        {
            assert!(
                ((a - b).abs() as f64) * spacing <= max + 1e-3,
                "moved {} mm",
                (a - b) * spacing as f32
            );
        }
    }
}

#[test]
fn label_maps_keep_their_values_and_move_with_the_image() {
    let v = input();
    // Labels: 0 background, 1 and 2 by intensity thresholds of the image itself.
    let label = Volume::new(
        v.data
            .iter()
            .map(|&x| {
                if x > 12000.0 {
                    2.0
                } else if x > 4000.0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect(),
        v.dims,
        v.affine,
    )
    .unwrap();
    let geo = Geometry {
        dims: v.dims,
        affine: &v.affine,
        labels: Some(&[0.0, 1.0, 2.0]),
    };
    let p = draw(
        &specs(
            r#"[{"affine": {"degrees": 15, "scales": 0.1, "translation": 3}}, {"elastic": {}}]"#,
        ),
        11,
        0,
        &geo,
    )
    .unwrap();
    let (img, lab) = exec::run(&p, v.clone(), Some(label.clone())).unwrap();
    let lab = lab.unwrap();
    assert!(lab.data.iter().all(|&l| l == 0.0 || l == 1.0 || l == 2.0));
    // Aligned: relabelling the moved image by the same thresholds agrees with the moved labels
    // nearly everywhere (they differ only where linear and nearest interpolation disagree).
    let agree = img
        .data
        .iter()
        .zip(&lab.data)
        .filter(|(x, l)| {
            let want = if **x > 12000.0 {
                2.0
            } else if **x > 4000.0 {
                1.0
            } else {
                0.0
            };
            want == **l
        })
        .count();
    let frac = agree as f64 / img.len() as f64;
    assert!(frac > 0.85, "only {frac} of voxels agree");
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let v = input();
    let geo = geometry(&v);
    let s = specs(
        r#"[{"flip": {"axes": ["LR"]}}, {"affine": {}}, {"elastic": {}}, {"bias_field": {}},
            {"noise": {}}, {"gamma": {}}, {"one_of": {"transforms": [{"blur": {}}, {"noise": {"kind": "rician"}}]}}]"#,
    );
    let a = draw(&s, 77, 3, &geo).unwrap();
    assert_eq!(a, draw(&s, 77, 3, &geo).unwrap());
    assert_ne!(a, draw(&s, 78, 3, &geo).unwrap());
    assert_ne!(a, draw(&s, 77, 4, &geo).unwrap());
    let x = exec::run(&a, v.clone(), None).unwrap().0;
    let y = exec::run(&a, v.clone(), None).unwrap().0;
    assert_eq!(x.data, y.data);
    // The plan survives JSON (the manifest column) and replays to the same bytes.
    let back: Plan = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
    assert_eq!(exec::run(&back, v, None).unwrap().0.data, x.data);
}

#[test]
fn one_of_follows_its_weights_and_some_of_picks_k() {
    let v = input();
    let geo = geometry(&v);
    let s =
        specs(r#"[{"one_of": {"weights": [3, 1], "transforms": [{"gamma": {}}, {"blur": {}}]}}]"#);
    let gammas = (0..4000)
        .filter(|&variant| draw(&s, 1, variant, &geo).unwrap().transforms[0].name() == "gamma")
        .count();
    assert!(
        (2850..3150).contains(&gammas),
        "{gammas} of 4000 picked gamma"
    );
    let s = specs(
        r#"[{"some_of": {"k": 2, "transforms": [{"gamma": {}}, {"blur": {}}, {"noise": {}}, {"flip": {}}]}}]"#,
    );
    for variant in 0..50 {
        let p = draw(&s, 4, variant, &geo).unwrap();
        assert_eq!(p.transforms.len(), 2);
        assert_ne!(p.transforms[0].name(), p.transforms[1].name());
    }
}

#[test]
fn a_probability_of_zero_never_applies_and_one_always_does() {
    let v = input();
    let geo = geometry(&v);
    let never = specs(r#"[{"gamma": {"p": 0.0}}]"#);
    let always = specs(r#"[{"gamma": {"p": 1.0}}]"#);
    for variant in 0..100 {
        assert!(
            draw(&never, 3, variant, &geo)
                .unwrap()
                .transforms
                .is_empty()
        );
        assert_eq!(draw(&always, 3, variant, &geo).unwrap().transforms.len(), 1);
    }
}

#[test]
fn bad_compositions_are_refused_with_the_reason() {
    for (json, needle) in [
        (r#"[{"gamma": {"p": 1.5}}]"#, "not a probability"),
        (r#"[{"noise": {"std": [2, 1]}}]"#, "empty"),
        (r#"[{"flip": {"axes": ["XY"]}}]"#, "not an anatomical axis"),
        (r#"[{"elastic": {"num_control_points": 3}}]"#, "at least 4"),
        (
            r#"[{"one_of": {"weights": [1], "transforms": [{"gamma": {}}, {"blur": {}}]}}]"#,
            "1 weights for 2",
        ),
        (
            r#"[{"some_of": {"k": 3, "transforms": [{"gamma": {}}]}}]"#,
            "at most",
        ),
    ] {
        let err = mindscan_augment::validate(&specs(json))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{json}: {err}");
    }
}

#[test]
fn the_vectorised_row_sampler_gives_the_scalar_bits() {
    let v = input();
    // Points inside, on the half-voxel margins, outside, and NaN.
    let mut pos = Vec::new();
    for n in 0..2000 {
        let t = n as f32 * 0.7311;
        pos.push([
            (t * 1.37).sin() * 20.0 + 16.0,
            (t * 0.91).cos() * 25.0 + 20.0,
            (t * 0.53).sin() * 15.0 + 12.0,
        ]);
    }
    pos.extend([
        [-0.5, 0.0, 0.0],
        [-0.5001, 3.0, 3.0],
        [32.49, 40.49, 24.49],
        [f32::NAN, 1.0, 1.0],
    ]);
    let mut got = vec![0f32; pos.len()];
    warp::trilinear_row(&v.data, v.dims, &pos, -7.0, &mut got);
    for (p, g) in pos.iter().zip(&got) {
        let want = warp::trilinear(&v.data, v.dims, *p, -7.0);
        assert_eq!(g.to_bits(), want.to_bits(), "at {p:?}");
    }
}

#[test]
fn borrowed_input_gives_the_same_bytes_as_an_owned_copy() {
    let v = input();
    let geo = geometry(&v);
    for json in [
        r#"[{"gamma": {}}, {"noise": {}}, {"affine": {"default_pad_value": 0}}]"#,
        r#"[{"affine": {}}, {"bias_field": {}}]"#,
        r#"[{"rescale": {}}, {"blur": {}}]"#,
        r#"[{"flip": {"flip_probability": 1.0}}, {"noise": {"kind": "rician"}}]"#,
    ] {
        let p = draw(&specs(json), 8, 1, &geo).unwrap();
        let owned = exec::run(&p, v.clone(), None).unwrap().0;
        let borrowed = exec::run_borrowed(&p, &v, None).unwrap().0;
        assert_eq!(owned.data, borrowed.data, "{json}");
    }
}

#[test]
fn labels_to_image_draws_each_label_from_its_own_gaussian() {
    let v = input();
    let label = Volume::new(
        v.data
            .iter()
            .map(|&x| {
                if x > 12000.0 {
                    2.0
                } else if x > 4000.0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect(),
        v.dims,
        v.affine,
    )
    .unwrap();
    let geo = Geometry {
        dims: v.dims,
        affine: &v.affine,
        labels: Some(&[0.0, 1.0, 2.0]),
    };
    let p = draw(
        &specs(r#"[{"labels_to_image": {"ignore_background": true}}]"#),
        4,
        0,
        &geo,
    )
    .unwrap();
    let Applied::LabelsToImage { classes, .. } = &p.transforms[0] else {
        panic!("{p:?}")
    };
    let (img, lab) = exec::run(&p, v.clone(), Some(label.clone())).unwrap();
    assert_eq!(
        lab.unwrap().data,
        label.data,
        "the label map is left as it was"
    );
    for &[l, mean, std] in classes {
        let vals: Vec<f64> = img
            .data
            .iter()
            .zip(&label.data)
            .filter(|(_, x)| **x as f64 == l)
            .map(|(v, _)| *v as f64)
            .collect();
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        if l == 0.0 {
            assert!(vals.iter().all(|&x| x == 0.0), "background stays 0");
            continue;
        }
        let sd = (vals.iter().map(|x| (x - m).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
        assert!(
            (m - mean).abs() < 4.0 * std / (vals.len() as f64).sqrt() + 1e-6,
            "label {l}: mean {m} vs {mean}"
        );
        assert!((sd / std - 1.0).abs() < 0.1, "label {l}: std {sd} vs {std}");
    }
}
