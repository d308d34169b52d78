//! CUDA kernels against their CPU twins. NVRTC compiles every kernel wherever it is installed
//! (CI sets MINDSCAN_REQUIRE_NVRTC=1 so a kernel that does not compile fails); the parity
//! checks need a GPU and print "skipped: no CUDA" without one.

mod common;

use common::input;
use mindscan_augment::cuda::{self, KERNELS};
use mindscan_augment::{Geometry, Plan, TransformSpec, Volume, draw, exec};
use mindscan_cuda::testing::{gpu_or_skip, nvrtc_or_skip};

#[test]
fn every_kernel_compiles_to_ptx_with_nvrtc() {
    if !nvrtc_or_skip() {
        return;
    }
    for (name, source, entry) in KERNELS {
        let ptx = mindscan_cuda::compile_ptx(name, source, None)
            .unwrap_or_else(|e| panic!("{e:#}"))
            .to_src();
        assert!(
            ptx.contains(&format!(".entry {entry}")),
            "{name}: no entry {entry}"
        );
    }
}

fn plan_for(json: &str, seed: u64, v: &Volume, labels: Option<&[f64]>) -> Plan {
    let specs: Vec<TransformSpec> = serde_json::from_str(json).unwrap();
    let geo = Geometry {
        dims: v.dims,
        affine: &v.affine,
        labels,
    };
    draw(&specs, seed, 0, &geo).unwrap()
}

fn max_rel(a: &[f32], b: &[f32]) -> f64 {
    let scale = b
        .iter()
        .fold(0f64, |m, &x| m.max(x.abs() as f64))
        .max(1e-12);
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs() / scale)
        .fold(0.0, f64::max)
}

#[test]
fn gpu_plans_match_the_cpu_twin() {
    let Some(gpu) = gpu_or_skip() else { return };
    let stream = gpu.stream().unwrap();
    let v = input();
    let label = Volume::new(
        v.data
            .iter()
            .map(|&x| if x > 9000.0 { 1.0 } else { 0.0 })
            .collect(),
        v.dims,
        v.affine,
    )
    .unwrap();
    let cases = [
        (
            r#"[{"flip": {"axes": ["LR", "AP"], "flip_probability": 1.0}}]"#,
            true,
        ),
        (
            r#"[{"affine": {"degrees": 12, "scales": 0.15, "translation": 4}}]"#,
            false,
        ),
        (
            r#"[{"affine": {}}, {"elastic": {"max_displacement": 6}}]"#,
            false,
        ),
        (
            r#"[{"elastic": {}}, {"affine": {"image_interpolation": "nearest"}}]"#,
            false,
        ),
        (
            r#"[{"noise": {"std": [5, 50]}}, {"noise": {"kind": "rician", "std": 30}}]"#,
            true,
        ),
        (
            r#"[{"bias_field": {}}, {"gamma": {"log_gamma": 0.3}}]"#,
            false,
        ),
        (
            r#"[{"flip": {"axes": [0, 1, 2]}}, {"affine": {}}, {"elastic": {}}, {"bias_field": {}}, {"noise": {}}]"#,
            false,
        ),
    ];
    for (seed, (json, exact)) in cases.iter().enumerate() {
        let plan = plan_for(json, seed as u64 + 1, &v, None);
        assert!(cuda::unsupported(&plan).is_none(), "{json}");
        let (want, want_l) = exec::run(&plan, v.clone(), Some(label.clone())).unwrap();
        let (got, got_l) = cuda::run(&gpu, &stream, &plan, &v, Some(&label)).unwrap();
        if *exact {
            assert_eq!(got.data, want.data, "{json}: not bit-identical");
        } else {
            let d = max_rel(&got.data, &want.data);
            assert!(d < 1e-4, "{json}: max relative difference {d}");
        }
        // Labels move by nearest neighbour: the same voxels but where a sample point sits on a
        // rounding boundary.
        let (gl, wl) = (got_l.unwrap().data, want_l.unwrap().data);
        let differ = gl.iter().zip(&wl).filter(|(a, b)| a != b).count();
        assert!(
            differ * 1000 <= gl.len(),
            "{json}: {differ} label voxels differ"
        );
    }
}

#[test]
fn plans_with_cpu_only_transforms_are_named() {
    let v = input();
    let plan = plan_for(r#"[{"affine": {}}, {"ghosting": {}}]"#, 1, &v, None);
    assert_eq!(cuda::unsupported(&plan), Some("ghosting"));
    let plan = plan_for(r#"[{"gamma": {}}, {"affine": {}}]"#, 1, &v, None);
    assert!(cuda::unsupported(&plan).unwrap().contains("pad value"));
    let plan = plan_for(
        r#"[{"gamma": {}}, {"affine": {"default_pad_value": 0}}]"#,
        1,
        &v,
        None,
    );
    assert_eq!(cuda::unsupported(&plan), None);
}
