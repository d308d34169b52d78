//! The UNet forward pass against MONAI's own outputs (`tools/make_fixtures.py`), and the errors
//! that name what is wrong with a model directory.
//!
//! Each fixture is a model directory (`config.json` + `model.safetensors`) and
//! `<name>.io.safetensors` with `x`, `t` (int64), optional `class_labels` (int64) and MONAI's
//! `out`. A missing fixture fails its test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mindscan_diffusion::unet::{UNet, UNetConfig, Workspace};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

/// Largest |ours - torch| allowed, relative to max |torch|.
const TOLERANCE: f64 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/monai")
}

struct Io {
    x: Vec<f32>,
    shape: Vec<usize>,
    t: Vec<f32>,
    labels: Option<Vec<u32>>,
    out: Vec<f32>,
    out_shape: Vec<usize>,
}

fn read_io(path: &Path) -> Io {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("{}: missing fixture: {e}", path.display()));
    let file =
        SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let f32s = |name: &str| -> (Vec<f32>, Vec<usize>) {
        let v = file
            .tensor(name)
            .unwrap_or_else(|e| panic!("{}: {name}: {e}", path.display()));
        assert_eq!(v.dtype(), Dtype::F32, "{name}");
        let data = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (data, v.shape().to_vec())
    };
    let i64s = |name: &str| -> Option<Vec<i64>> {
        let v = file.tensor(name).ok()?;
        assert_eq!(v.dtype(), Dtype::I64, "{name}");
        Some(
            v.data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        )
    };
    let (x, shape) = f32s("x");
    let (out, out_shape) = f32s("out");
    let t = i64s("t").expect("t").iter().map(|&v| v as f32).collect();
    let labels = i64s("class_labels").map(|l| l.iter().map(|&v| v as u32).collect());
    Io {
        x,
        shape,
        t,
        labels,
        out,
        out_shape,
    }
}

/// max |a - b| / max |b|, failing on any non-finite value.
fn rel_err(ours: &[f32], torch: &[f32]) -> f64 {
    assert_eq!(ours.len(), torch.len());
    assert!(ours.iter().all(|v| v.is_finite()), "non-finite output");
    let scale = torch.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    let diff = ours
        .iter()
        .zip(torch)
        .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    diff / scale
}

fn check(model_dir: &Path, io_file: &Path) {
    let model = UNet::load_dir(model_dir).unwrap_or_else(|e| panic!("{e:#}"));
    let io = read_io(io_file);
    let [n, _, h, w] = io.shape[..] else {
        panic!("x is not NCHW")
    };
    let out = model
        .forward(&io.x, n, h, w, &io.t, io.labels.as_deref())
        .unwrap();
    assert_eq!(io.out_shape, [n, model.config().out_channels, h, w]);
    let err = rel_err(&out, &io.out);
    println!("{}: max relative error {err:.2e}", model_dir.display());
    assert!(
        err <= TOLERANCE,
        "{}: max |ours - torch| / max |torch| = {err:.3e}",
        model_dir.display()
    );
}

fn check_fixture(name: &str, io: &str) {
    check(
        &fixtures().join(name),
        &fixtures().join(format!("{io}.io.safetensors")),
    );
}

/// Two levels of attention, two resnets at the middle level, non-square input, 2 channels.
#[test]
fn tiny_model_matches_monai() {
    check_fixture("tiny", "tiny");
}

/// `num_class_embeds`: the class embedding is added to the time embedding.
#[test]
fn class_conditioned_model_matches_monai() {
    check_fixture("cond", "cond");
}

/// `use_combined_linear` (one `qkv` layer) and `include_fc: false` (no `out_proj`).
#[test]
fn combined_qkv_model_without_out_projection_matches_monai() {
    check_fixture("qkv", "qkv");
}

/// `resblock_updown`: resnets that average-pool and upsample.
#[test]
fn resblock_updown_model_matches_monai() {
    check_fixture("updown", "updown");
}

/// The tiny model's weights under MONAI GenerativeModels names (`to_q`, `proj_attn`,
/// `upsampler.conv`) give the same output.
#[test]
fn old_monai_generative_weight_names_load_and_match() {
    check_fixture("old", "tiny");
}

/// The trained brain DDPM shipped with the pipelines.
#[test]
fn brain_ddpm_64_matches_monai() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/models/brain-ddpm-64");
    check(&dir, &fixtures().join("brain.io.safetensors"));
}

/// A workspace reused across calls and batch sizes gives the same numbers as a fresh one.
#[test]
fn a_reused_workspace_gives_the_same_result_as_a_fresh_one() {
    let model = UNet::load_dir(&fixtures().join("tiny")).unwrap();
    let io = read_io(&fixtures().join("tiny.io.safetensors"));
    let [n, c, h, w] = io.shape[..] else { panic!() };
    let fresh = model.forward(&io.x, n, h, w, &io.t, None).unwrap();
    let mut ws = Workspace::new();
    let mut out = vec![0.0; fresh.len()];
    let one = c * h * w;
    let mut single = vec![0.0; model.config().out_channels * h * w];
    for _ in 0..2 {
        model
            .forward_into(&mut ws, &io.x, n, h, w, &io.t, None, &mut out)
            .unwrap();
        assert_eq!(out, fresh);
        model
            .forward_into(
                &mut ws,
                &io.x[..one],
                1,
                h,
                w,
                &io.t[..1],
                None,
                &mut single,
            )
            .unwrap();
        assert!(rel_err(&single, &fresh[..single.len()]) < 1e-6);
    }
}

/// A scratch copy of the tiny model directory whose weights are `edit`ed.
fn edited_tiny(
    tag: &str,
    edit: impl FnOnce(&mut HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>),
) -> PathBuf {
    let src = fixtures().join("tiny");
    let dir = std::env::temp_dir().join(format!("mindscan-unet-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> = file
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                (v.dtype(), v.shape().to_vec(), v.data().to_vec()),
            )
        })
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, (d, s, b))| (k.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    let err = UNet::load_dir(dir)
        .err()
        .expect("the model should be refused");
    std::fs::remove_dir_all(dir).ok();
    format!("{err:#}")
}

#[test]
fn a_missing_tensor_is_an_error_naming_it_and_the_file() {
    let name = "down_blocks.1.attentions.0.attn.to_k.weight";
    let dir = edited_tiny("missing", |t| {
        t.remove(name).unwrap();
    });
    let msg = load_error(&dir);
    assert!(
        msg.contains(name) && msg.contains("model.safetensors") && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn a_wrongly_shaped_tensor_is_an_error_stating_expected_and_found() {
    let name = "conv_in.conv.weight";
    let dir = edited_tiny("shape", |t| {
        let (_, shape, _) = t.get_mut(name).unwrap();
        *shape = vec![shape[0], shape[1], 9];
    });
    let msg = load_error(&dir);
    assert!(
        msg.contains(&format!("{name}: expected [8, 2, 3, 3], found [8, 2, 9]")),
        "{msg}"
    );
}

#[test]
fn an_unexpected_tensor_is_an_error_naming_it() {
    let dir = edited_tiny("unexpected", |t| {
        t.insert("extra.weight".into(), (Dtype::F32, vec![1], vec![0; 4]));
    });
    let msg = load_error(&dir);
    assert!(
        msg.contains("unexpected") && msg.contains("extra.weight"),
        "{msg}"
    );
}

#[test]
fn half_precision_weights_are_converted_to_f32() {
    let dir = edited_tiny("f16", |t| {
        for (dtype, _, bytes) in t.values_mut() {
            *bytes = bytes
                .chunks_exact(4)
                .flat_map(|b| {
                    let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    (f32::from_bits(v.to_bits() & 0xffff_0000).to_bits() >> 16).to_le_bytes()[..2]
                        .to_vec()
                })
                .collect();
            *dtype = Dtype::BF16;
        }
    });
    let model = UNet::load_dir(&dir).unwrap_or_else(|e| panic!("{e:#}"));
    std::fs::remove_dir_all(&dir).ok();
    let io = read_io(&fixtures().join("tiny.io.safetensors"));
    let [n, _, h, w] = io.shape[..] else { panic!() };
    let out = model.forward(&io.x, n, h, w, &io.t, None).unwrap();
    // bf16 weights: close to, not at, float32 parity.
    assert!(rel_err(&out, &io.out) < 0.1);
}

fn config_error(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let text = std::fs::read_to_string(fixtures().join("tiny/config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut json);
    let dir = std::env::temp_dir().join(format!(
        "mindscan-unet-config-{}-{}",
        std::process::id(),
        rand_tag()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let err = UNetConfig::from_file(&path).expect_err("the config should be refused");
    std::fs::remove_dir_all(&dir).ok();
    let msg = format!("{err:#}");
    assert!(msg.contains("config.json"), "{msg}");
    msg
}

fn rand_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn unsupported_configs_are_refused_naming_the_option() {
    use serde_json::json;
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("spatial_dims", Box::new(|j| j["spatial_dims"] = json!(3))),
        (
            "with_conditioning",
            Box::new(|j| j["with_conditioning"] = json!(true)),
        ),
        (
            "upcast_attention",
            Box::new(|j| j["upcast_attention"] = json!(true)),
        ),
        (
            "norm_num_groups",
            Box::new(|j| j["norm_num_groups"] = json!(3)),
        ),
        (
            "attention_levels",
            Box::new(|j| j["attention_levels"] = json!([false, true])),
        ),
        (
            "num_res_blocks",
            Box::new(|j| j["num_res_blocks"] = json!([1, 1])),
        ),
        (
            "num_head_channels",
            Box::new(|j| j["num_head_channels"] = json!([8, 3, 8])),
        ),
        (
            "format",
            Box::new(|j| j["format"] = json!("something.else")),
        ),
        (
            "unknown field `dropout`",
            Box::new(|j| j["dropout"] = json!(0.1)),
        ),
    ];
    for (option, edit) in cases {
        let msg = config_error(edit);
        assert!(msg.contains(option), "{option}: {msg}");
    }
}

#[test]
fn forward_refuses_inputs_that_do_not_fit_the_model() {
    let model = UNet::load_dir(&fixtures().join("tiny")).unwrap();
    let x = vec![0.0; 2 * 2 * 24 * 16];
    let err = |r: anyhow::Result<Vec<f32>>| format!("{:#}", r.expect_err("refused"));
    assert!(err(model.forward(&x, 2, 24, 16, &[1.0], None)).contains("timesteps"));
    assert!(err(model.forward(&x, 2, 24, 16, &[1.0, 2.0], Some(&[0, 1]))).contains("class_labels"));
    assert!(
        err(model.forward(&x[..2 * 2 * 22 * 16], 2, 22, 16, &[1.0, 2.0], None))
            .contains("multiple of 4")
    );
    assert!(err(model.forward(&x[1..], 2, 24, 16, &[1.0, 2.0], None)).contains("x holds"));
    let cond = UNet::load_dir(&fixtures().join("cond")).unwrap();
    let x1 = vec![0.0; 24 * 16];
    assert!(err(cond.forward(&x1, 1, 24, 16, &[1.0], None)).contains("class_labels"));
    assert!(err(cond.forward(&x1, 1, 24, 16, &[1.0], Some(&[3]))).contains("out of range"));
}
