//! `image.resize`'s pure functions: sizes and placement for every mode, and the numbers of
//! PyTorch's `F.interpolate` (bilinear with `align_corners=False`, nearest-exact, area).

use mindscan_plugin_imaging::core::resize::{
    Interpolation, ResizeMode, ResizePlan, min_value, resize_area, resize_f32, resize_linear,
    resize_nearest,
};

fn plan(from: [usize; 2], to: [usize; 2], mode: ResizeMode) -> ResizePlan {
    ResizePlan::new(from, to, mode).unwrap()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-5 * y.abs().max(1.0))
}

#[test]
fn each_mode_gives_the_size_asked_for_and_keeps_the_aspect_ratio() {
    for (from, to) in [
        ([30, 50], [64, 64]),
        ([50, 30], [64, 64]),
        ([30, 50], [20, 100]),
        ([181, 217], [128, 96]),
        ([7, 3], [5, 9]),
    ] {
        let aspect = from[0] as f64 / from[1] as f64;
        let src: Vec<f32> = (0..from[0] * from[1]).map(|v| v as f32).collect();
        for mode in [ResizeMode::Fit, ResizeMode::Pad, ResizeMode::Crop] {
            let p = plan(from, to, mode);
            for interp in [
                Interpolation::Linear,
                Interpolation::Nearest,
                Interpolation::Area,
            ] {
                assert_eq!(resize_f32(&src, &p, interp, 0.0).len(), to[0] * to[1]);
            }
            match mode {
                ResizeMode::Pad => assert_eq!(p.scaled, from),
                // Fit: inside the canvas, touching it on one axis; crop: covering it.
                ResizeMode::Fit => {
                    assert!(p.scaled[0] <= to[0] && p.scaled[1] <= to[1], "{p:?}");
                    assert!(p.scaled[0] == to[0] || p.scaled[1] == to[1], "{p:?}");
                }
                ResizeMode::Crop => {
                    assert!(p.scaled[0] >= to[0] && p.scaled[1] >= to[1], "{p:?}");
                    assert!(p.scaled[0] == to[0] || p.scaled[1] == to[1], "{p:?}");
                }
            }
            if mode != ResizeMode::Pad {
                // Rounding each side to whole pixels moves the ratio by at most half a pixel.
                let got = p.scaled[0] as f64 / p.scaled[1] as f64;
                let tol = aspect * (0.5 / p.scaled[0] as f64 + 0.5 / p.scaled[1] as f64) * 1.01;
                assert!(
                    (got - aspect).abs() <= tol,
                    "{mode:?} {from:?}->{to:?}: {p:?}"
                );
            }
            // Centred; the odd pixel of padding or cropping at the bottom / right.
            let diff = [0, 1].map(|a| to[a] as i64 - p.scaled[a] as i64);
            assert_eq!(p.offset, diff.map(|d| d / 2), "{p:?}");
        }
    }
}

#[test]
fn fit_pads_and_crop_cuts_a_non_square_image_as_documented() {
    let fit = plan([30, 50], [64, 64], ResizeMode::Fit);
    assert_eq!(fit.scaled, [38, 64]);
    assert_eq!(fit.offset, [13, 0]);
    let crop = plan([30, 50], [64, 64], ResizeMode::Crop);
    assert_eq!(crop.scaled, [64, 107]);
    assert_eq!(crop.offset, [0, -21]);
    let pad = plan([30, 50], [40, 40], ResizeMode::Pad);
    assert_eq!(pad.offset, [5, -5]);
    assert!(ResizePlan::new([0, 5], [4, 4], ResizeMode::Fit).is_err());
}

#[test]
fn a_constant_image_stays_constant_where_it_is_not_padded() {
    let src = vec![7.25f32; 13 * 29];
    for mode in [ResizeMode::Fit, ResizeMode::Crop] {
        for to in [[8, 8], [64, 40], [13, 29]] {
            let p = plan([13, 29], to, mode);
            for interp in [
                Interpolation::Linear,
                Interpolation::Nearest,
                Interpolation::Area,
            ] {
                // The pad value is the constant too: the whole canvas is.
                let out = resize_f32(&src, &p, interp, 7.25);
                assert!(
                    close(&out, &vec![7.25; to[0] * to[1]]),
                    "{mode:?} {to:?} {interp:?}"
                );
            }
        }
    }
}

#[test]
fn bilinear_downscale_by_two_of_a_ramp_averages_neighbours() {
    // v = 10 r + c on 4 x 8 -> 2 x 4: torch gives the mean of each 2 x 2 block
    // (src = (dst + 0.5) * 2 - 0.5 = 2 dst + 0.5).
    let src: Vec<f32> = (0..4)
        .flat_map(|r| (0..8).map(move |c| (10 * r + c) as f32))
        .collect();
    let p = plan([4, 8], [2, 4], ResizeMode::Fit);
    assert_eq!(p.scaled, [2, 4]);
    let out = resize_linear(&src, &p, 0.0);
    let want: Vec<f32> = (0..2)
        .flat_map(|r| (0..4).map(move |c| 10.0 * (2 * r) as f32 + 5.0 + (2 * c) as f32 + 0.5))
        .collect();
    assert!(close(&out, &want), "{out:?} vs {want:?}");
}

#[test]
fn bilinear_matches_torch_on_uneven_factors_and_upscaling() {
    // torch.nn.functional.interpolate(x, size=..., mode="bilinear", align_corners=False) on a
    // single row: x = [0, 4] -> 4 columns gives [0, 1, 3, 4] (edges clamp).
    let up = resize_linear(&[0.0f32, 4.0], &plan([1, 2], [1, 4], ResizeMode::Crop), 0.0);
    assert!(close(&up, &[0.0, 1.0, 3.0, 4.0]), "{up:?}");
    // x = c^2, 5 -> 3 columns: src = (dst + 0.5) * 5/3 - 0.5 = 1/3, 2, 11/3.
    let sq: Vec<f32> = (0..5).map(|c| (c * c) as f32).collect();
    let p = ResizePlan {
        from: [1, 5],
        to: [1, 3],
        scaled: [1, 3],
        scale: [1.0, 0.6],
        offset: [0, 0],
    };
    let down = resize_linear(&sq, &p, 0.0);
    let want = [1.0 / 3.0, 4.0, 9.0 / 3.0 + 16.0 * 2.0 / 3.0];
    assert!(close(&down, &want), "{down:?} vs {want:?}");
}

#[test]
fn nearest_picks_source_pixels_exactly_in_their_own_type() {
    // nearest-exact: floor((dst + 0.5) * 2) = 1, 3 on each axis of a 4 x 4 -> 2 x 2.
    let src: Vec<u16> = (0..16).collect();
    let out = resize_nearest(&src, &plan([4, 4], [2, 2], ResizeMode::Fit), 0);
    assert_eq!(out, [5, 7, 13, 15]);
    // Upscaling repeats each pixel; every value is one of the source's.
    let up = resize_nearest(&src, &plan([4, 4], [12, 12], ResizeMode::Fit), 0);
    assert!(up.iter().all(|v| src.contains(v)));
    assert_eq!(&up[..12], &[0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
}

#[test]
fn area_averages_the_source_boxes_adaptive_pooling_takes() {
    let src: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let out = resize_area(&src, &plan([4, 4], [2, 2], ResizeMode::Fit), 0.0);
    assert!(close(&out, &[2.5, 4.5, 10.5, 12.5]), "{out:?}");
    // 6 -> 4: boxes [0,2) [1,3) [3,5) [4,6), overlapping as torch's adaptive_avg_pool2d.
    let row: Vec<f32> = (0..6).map(|v| (v * v) as f32).collect();
    let p = ResizePlan {
        from: [1, 6],
        to: [1, 4],
        scaled: [1, 4],
        scale: [1.0, 4.0 / 6.0],
        offset: [0, 0],
    };
    let out = resize_area(&row, &p, 0.0);
    assert!(close(&out, &[0.5, 2.5, 12.5, 20.5]), "{out:?}");
}

#[test]
fn padding_takes_the_pad_value_and_minimum_ignores_nan() {
    let src = [3.0f32, 1.0, 2.0, 5.0];
    let out = resize_f32(
        &src,
        &plan([2, 2], [2, 4], ResizeMode::Pad),
        Interpolation::Linear,
        -1.0,
    );
    assert_eq!(out, [-1.0, 3.0, 1.0, -1.0, -1.0, 2.0, 5.0, -1.0]);
    assert_eq!(min_value(&[f32::NAN, 4.0, -2.0]), Some(-2.0));
    assert_eq!(min_value::<i16>(&[]), None);
}

#[test]
fn a_pixel_maps_back_to_its_source_through_the_plan() {
    for mode in [ResizeMode::Fit, ResizeMode::Crop, ResizeMode::Pad] {
        let p = plan([30, 50], [64, 48], mode);
        // The source's corner pixel centres, forward then back.
        for src in [[0.0, 0.0], [29.0, 49.0], [12.0, 31.0]] {
            let dst = [0, 1].map(|a| p.offset[a] as f64 + (src[a] + 0.5) * p.scale[a] - 0.5);
            let back = p.to_source(dst[0], dst[1]);
            assert!((back[0] - src[0]).abs() < 1e-9 && (back[1] - src[1]).abs() < 1e-9);
        }
        // The edges of the scaled image are the source's edges.
        let top_left = p.to_source(p.offset[0] as f64 - 0.5, p.offset[1] as f64 - 0.5);
        assert!(
            top_left.iter().all(|v| (v + 0.5).abs() < 1e-9),
            "{top_left:?}"
        );
    }
}
