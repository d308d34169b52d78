//! Percentiles against numpy (fixture made by tests/fixtures/make_percentile_fixture.py),
//! window modes, mapping to u8/u16 and the near-empty-slice rule.

use mindscan_plugin_imaging::core::slice::{EmptySliceRule, foreground_fraction};
use mindscan_plugin_imaging::core::window::{
    Window, WindowSpec, min_max, percentile, percentile_f32, percentile_window, percentiles,
};

const MASK_MUL: u64 = 6364136223846793005;
const MASK_ADD: u64 = 1442695040888963407;

/// Bit-exact port of `lcg_data` in make_percentile_fixture.py.
fn lcg_data(n: usize, seed: u64, transform: &str, nan_every: usize) -> Vec<f32> {
    let mut x = seed;
    (0..n)
        .map(|i| {
            x = x.wrapping_mul(MASK_MUL).wrapping_add(MASK_ADD);
            let u = (x >> 40) as f32 * (1.0 / (1u32 << 24) as f32);
            let mut v = match transform {
                "uniform" => u * 1000.0 - 500.0,
                "skewed" => {
                    if (x >> 20) % 10 < 6 {
                        0.0
                    } else {
                        u * 4096.0
                    }
                }
                "pow8" => {
                    let a = u * u;
                    let b = a * a;
                    let c = b * b;
                    c * 10000.0
                }
                t => panic!("unknown transform {t}"),
            };
            if nan_every > 0 && i % nan_every == 0 {
                v = f32::NAN;
            }
            v
        })
        .collect()
}

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/percentile_cases.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn case_data(case: &serde_json::Value) -> Vec<f32> {
    if let Some(d) = case.get("data") {
        d.as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().map_or(f32::NAN, |x| x as f32))
            .collect()
    } else {
        let l = &case["lcg"];
        lcg_data(
            l["n"].as_u64().unwrap() as usize,
            l["seed"].as_u64().unwrap(),
            l["transform"].as_str().unwrap(),
            l["nan_every"].as_u64().unwrap() as usize,
        )
    }
}

#[test]
fn percentiles_match_numpy_exactly() {
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 9);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let data = case_data(case);
        let qs: Vec<f64> = case["qs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = percentiles(&data, &qs).unwrap();
        let want = case["expected"].as_array().unwrap();
        let want_f32 = case["expected_scalar_f32"].as_array().unwrap();
        for (i, &q) in qs.iter().enumerate() {
            let w: f64 = want[i].as_str().unwrap().parse().unwrap();
            assert_eq!(got[i], w, "{name} q={q}: got {} want {w}", got[i]);
            assert_eq!(percentile(&data, q).unwrap(), w, "{name} q={q}");
            let w32 = want_f32[i].as_str().unwrap().parse::<f64>().unwrap() as f32;
            let g32 = percentile_f32(&data, q).unwrap();
            assert_eq!(g32, w32, "{name} scalar q={q}: got {g32} want {w32}");
        }
    }
}

#[test]
fn percentile_matches_sorting_on_awkward_data() {
    // Many duplicates, negative values, infinities (ignored) and NaN.
    let mut data: Vec<f32> = lcg_data(400_000, 99, "skewed", 0)
        .into_iter()
        .enumerate()
        .map(|(i, v)| if i % 3 == 0 { -v } else { v })
        .collect();
    data[10] = f32::INFINITY;
    data[11] = f32::NEG_INFINITY;
    data[12] = f32::NAN;
    let mut sorted: Vec<f32> = data.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f32::total_cmp);
    let n = sorted.len();
    for q in [0.0, 0.1, 5.0, 37.5, 50.0, 80.0, 99.9, 100.0] {
        let h = (n - 1) as f64 * (q / 100.0);
        let k = h.floor() as usize;
        let (a, b) = (sorted[k], sorted[(k + 1).min(n - 1)]);
        let g = h - k as f64;
        let d = (b - a) as f64;
        let want = if g >= 0.5 {
            b as f64 - d * (1.0 - g)
        } else {
            a as f64 + d * g
        };
        assert_eq!(percentile(&data, q).unwrap(), want, "q={q}");
    }
}

#[test]
fn nan_and_degenerate_inputs() {
    assert_eq!(percentile(&[], 50.0), None);
    assert_eq!(percentile(&[f32::NAN, f32::NAN], 50.0), None);
    assert_eq!(min_max(&[f32::NAN]), None);
    let w = percentile_window(&[f32::NAN, 1.0, f32::NAN, 3.0], 0.0, 100.0).unwrap();
    assert_eq!((w.lo, w.hi), (1.0, 3.0));
    assert_eq!(percentile(&[f32::NAN, 1.0, 3.0], 50.0), Some(2.0));
    // Constant image: window collapses, mapping is all zero.
    let flat = vec![7.0f32; 1000];
    let w = percentile_window(&flat, 0.5, 99.5).unwrap();
    assert_eq!((w.lo, w.hi), (7.0, 7.0));
    assert!(w.map_u8(&flat).iter().all(|&v| v == 0));
    assert!(w.map_u16(&flat).iter().all(|&v| v == 0));
    // Large constant volume goes through the histogram path.
    let big = vec![-3.25f32; 1 << 20];
    assert_eq!(percentile(&big, 99.5), Some(-3.25));
}

#[test]
fn window_specs() {
    let data: Vec<f32> = (0..=100).map(|v| v as f32).collect();
    let p = WindowSpec::default().volume_window(&data).unwrap();
    assert_eq!((p.lo, p.hi), (0.5, 99.5));
    let cw = WindowSpec::CenterWidth {
        center: 40.0,
        width: 400.0,
    };
    assert_eq!(
        cw.volume_window(&data),
        Some(Window {
            lo: -160.0,
            hi: 240.0
        })
    );
    assert_eq!(
        WindowSpec::MinMax.volume_window(&data),
        Some(Window { lo: 0.0, hi: 100.0 })
    );
    assert_eq!(WindowSpec::SliceMinMax.volume_window(&data), None);
    let slice = [3.0f32, f32::NAN, 9.0];
    assert_eq!(
        WindowSpec::SliceMinMax.slice_window(None, &slice),
        Window { lo: 3.0, hi: 9.0 }
    );
    assert_eq!(WindowSpec::MinMax.slice_window(Some(p), &slice), p);
    let json = serde_json::to_string(&cw).unwrap();
    let back: WindowSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cw);
}

#[test]
fn mapping_to_u8_and_u16() {
    let w = Window { lo: 10.0, hi: 20.0 };
    let src = [
        f32::NAN,
        f32::NEG_INFINITY,
        0.0,
        10.0,
        12.0,
        15.0,
        19.99,
        20.0,
        1e9,
        f32::INFINITY,
    ];
    let u8s = w.map_u8(&src);
    assert_eq!(u8s, vec![0, 0, 0, 0, 51, 128, 255, 255, 255, 255]);
    let u16s = w.map_u16(&src);
    assert_eq!(
        u16s,
        vec![0, 0, 0, 0, 13107, 32768, 65469, 65535, 65535, 65535]
    );
    // Reference formula on many values.
    let vals: Vec<f32> = (0..10_000).map(|i| 5.0 + i as f32 * 0.0017).collect();
    for (&v, &m) in vals.iter().zip(w.map_u8(&vals).iter()) {
        let r = (((v as f64 - 10.0) / 10.0).clamp(0.0, 1.0) * 255.0).round();
        assert!((m as f64 - r).abs() <= 1.0, "{v}: {m} vs {r}");
    }
    // Inverted window behaves like an empty one.
    assert!(
        Window { lo: 5.0, hi: 1.0 }
            .map_u8(&vals)
            .iter()
            .all(|&v| v == 0)
    );
}

#[test]
fn near_empty_rule() {
    let rule = EmptySliceRule::default();
    let w = Window { lo: 0.0, hi: 100.0 };
    assert_eq!(rule.threshold(w), 5.0);
    let mut img = vec![0.0f32; 1000];
    assert!(rule.is_near_empty(&img, w));
    for v in img.iter_mut().take(9) {
        *v = 50.0;
    }
    assert!(rule.is_near_empty(&img, w), "0.9% foreground is below 1%");
    img[9] = 5.5;
    assert!(!rule.is_near_empty(&img, w), "1.0% foreground is kept");
    img[9] = 5.0; // not strictly above the threshold
    assert!(rule.is_near_empty(&img, w));
    assert_eq!(foreground_fraction(&[f32::NAN, 1.0], 0.0), 0.5);
}
