//! `image.resize`: fits 2D images to a fixed size over [`crate::core::resize`].

use mindscan_sdk::prelude::*;
use serde_json::{Value, json};

use crate::core::resize::{
    Interpolation, Pixel, ResizeMode, ResizePlan, min_value, resize_f32, resize_nearest,
};

#[derive(Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModeParam {
    /// Scale (one factor for both axes) so the whole image fits, then pad to `size`.
    #[default]
    Fit,
    /// No scaling: centre-pad to `size`, or centre-crop where the image is larger.
    Pad,
    /// Scale (one factor) so the image covers `size`, then centre-crop.
    Crop,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InterpolationParam {
    /// torch `F.interpolate(mode="bilinear", align_corners=False)`.
    #[default]
    Linear,
    /// torch `mode="nearest-exact"`; keeps the dtype.
    Nearest,
    /// torch `mode="area"`: box averages, for downscaling by large factors.
    Area,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PadName {
    /// The smallest value of the image.
    Minimum,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq)]
#[serde(untagged)]
pub enum PadValue {
    Number(f64),
    Named(PadName),
}

impl Default for PadValue {
    fn default() -> Self {
        PadValue::Named(PadName::Minimum)
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeParams {
    /// Output size `[rows, cols]`.
    pub size: [usize; 2],
    /// `fit`, `pad` or `crop`.
    #[serde(default)]
    pub mode: ModeParam,
    /// `linear`, `nearest` or `area` (unused by mode `pad`, which never scales).
    #[serde(default)]
    pub interpolation: InterpolationParam,
    /// Value of padded pixels: a number, or `minimum` (the image's own minimum).
    #[serde(default)]
    pub pad_value: PadValue,
}

/// Fits 2D images to `size` (scaled, padded, cropped), recording how (`resize` metadata) so a
/// pixel maps back to its source slice, and updating `spacing`.
pub struct ImageResize {
    size: [usize; 2],
    mode: ResizeMode,
    interp: Interpolation,
    pad: PadValue,
}

/// Largest side accepted (a typo guard: 65536² float32 pixels are 16 GiB).
const MAX_SIDE: usize = 65536;

impl Stage for ImageResize {
    type Params = ResizeParams;
    const NAME: &'static str = "image.resize";
    const ROLE: Role = Role::Transform;
    const INPUTS: &'static [&'static str] = &[kinds::IMAGE];
    const OUTPUTS: &'static [&'static str] = &["same"];
    const DESCRIPTION: &'static str =
        "Fit images to a fixed size: fit (scale + pad), pad or crop; torch's bilinear/nearest/area";

    fn new(p: ResizeParams, _host: &Host) -> Result<Self> {
        if p.size.iter().any(|&n| n == 0 || n > MAX_SIDE) {
            bail!("size {:?}: each side must be 1..={MAX_SIDE}", p.size);
        }
        Ok(ImageResize {
            size: p.size,
            mode: match p.mode {
                ModeParam::Fit => ResizeMode::Fit,
                ModeParam::Pad => ResizeMode::Pad,
                ModeParam::Crop => ResizeMode::Crop,
            },
            interp: match p.interpolation {
                InterpolationParam::Linear => Interpolation::Linear,
                InterpolationParam::Nearest => Interpolation::Nearest,
                InterpolationParam::Area => Interpolation::Area,
            },
            pad: p.pad_value,
        })
    }

    fn process(&self, _ctx: &Context, item: Item, out: &mut Emitter) -> Result<()> {
        out.emit(self.resize(item)?)
    }
}

impl ImageResize {
    /// The resized item: `data` with the chosen interpolation, every other tensor of the same
    /// shape (label maps, masks) with nearest neighbour and 0 padding, others unchanged.
    pub fn resize(&self, mut item: Item) -> Result<Item> {
        let data = item.data()?;
        let [rows, cols] = *data.shape() else {
            bail!(
                "image.resize needs 2D images [rows, cols], got shape {:?}",
                data.shape()
            );
        };
        let shape = data.shape().to_vec();
        let plan = ResizePlan::new([rows, cols], self.size, self.mode).map_err(|e| anyhow!(e))?;
        for (name, t) in item.tensors.iter_mut() {
            if t.shape() != shape.as_slice() {
                continue;
            }
            let resized = if name == "data" {
                self.resize_tensor(t, &plan, self.interp, self.pad)
            } else {
                self.resize_tensor(t, &plan, Interpolation::Nearest, PadValue::Number(0.0))
            };
            *t = resized.with_context(|| format!("tensor '{name}'"))?;
        }
        let meta = &mut item.meta;
        if let Some(sp) = meta.get::<Vec<f64>>(keys::SPACING)
            && sp.len() == 2
        {
            meta.set(
                keys::SPACING,
                [sp[0] / plan.scale[0], sp[1] / plan.scale[1]],
            );
        }
        let record = self.record(&plan, meta.0.get("resize"));
        meta.set("resize", record);
        Ok(item)
    }

    /// The `resize` metadata: this plan, composed with an earlier resize's so that `from`,
    /// `scale` and `offset` still map to the original slice.
    fn record(&self, plan: &ResizePlan, earlier: Option<&Value>) -> Value {
        let mut from = plan.from.map(|n| n as f64);
        let mut scale = plan.scale;
        let mut offset = plan.offset.map(|o| o as f64);
        let two = |v: Option<&Value>| -> Option<[f64; 2]> {
            let a = v?.as_array()?;
            Some([a.first()?.as_f64()?, a.get(1)?.as_f64()?])
        };
        if let Some(e) = earlier
            && let (Some(f), Some(s), Some(o)) = (
                two(e.get("from")),
                two(e.get("scale")),
                two(e.get("offset")),
            )
        {
            // out = o2 + s2 * mid and mid = o1 + s1 * src, in pixel-edge coordinates.
            from = f;
            offset = [0, 1].map(|a| offset[a] + scale[a] * o[a]);
            scale = [0, 1].map(|a| scale[a] * s[a]);
        }
        let mode = match self.mode {
            ResizeMode::Fit => "fit",
            ResizeMode::Pad => "pad",
            ResizeMode::Crop => "crop",
        };
        let interp = match self.interp {
            Interpolation::Linear => "linear",
            Interpolation::Nearest => "nearest",
            Interpolation::Area => "area",
        };
        json!({
            "from": from.map(|n| n as u64),
            "to": plan.to,
            "scale": scale,
            "offset": offset,
            "mode": mode,
            "interpolation": interp,
        })
    }

    fn resize_tensor(
        &self,
        t: &Tensor,
        plan: &ResizePlan,
        interp: Interpolation,
        pad: PadValue,
    ) -> Result<Tensor> {
        if !t.is_c_contiguous() {
            bail!("image.resize needs row-major images");
        }
        // The dtype depends on the configuration only, never on an image's size.
        let keep = interp == Interpolation::Nearest || self.mode == ResizeMode::Pad;
        match t.dtype() {
            DType::U8 => typed::<u8>(t, plan, interp, pad, keep),
            DType::I8 => typed::<i8>(t, plan, interp, pad, keep),
            DType::U16 => typed::<u16>(t, plan, interp, pad, keep),
            DType::I16 => typed::<i16>(t, plan, interp, pad, keep),
            DType::U32 => typed::<u32>(t, plan, interp, pad, keep),
            DType::I32 => typed::<i32>(t, plan, interp, pad, keep),
            DType::U64 => typed::<u64>(t, plan, interp, pad, keep),
            DType::I64 => typed::<i64>(t, plan, interp, pad, keep),
            DType::F32 => typed::<f32>(t, plan, interp, pad, keep),
            DType::F64 => typed::<f64>(t, plan, interp, pad, keep),
            DType::C64 | DType::C128 => {
                bail!("complex images have no real value; take the magnitude first")
            }
        }
    }
}

/// Resizes pixels of type `T`: in `T` when `keep` (no value is computed), else to float32.
fn typed<T: Pixel + Element>(
    t: &Tensor,
    plan: &ResizePlan,
    interp: Interpolation,
    pad: PadValue,
    keep: bool,
) -> Result<Tensor> {
    let src: &[T] = t.as_slice()?;
    let pad: T = match pad {
        PadValue::Number(v) => T::from_f64(v),
        PadValue::Named(PadName::Minimum) => min_value(src).unwrap_or(T::from_f64(0.0)),
    };
    Ok(if keep {
        Tensor::from_vec(resize_nearest(src, plan, pad), &plan.to)
    } else {
        Tensor::from_vec(resize_f32(src, plan, interp, pad.to_f32()), &plan.to)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(
        size: [usize; 2],
        mode: ResizeMode,
        interp: Interpolation,
        pad: PadValue,
    ) -> ImageResize {
        ImageResize {
            size,
            mode,
            interp,
            pad,
        }
    }

    fn image<T: Element>(px: Vec<T>, rows: usize, cols: usize) -> Item {
        let mut item = Item::new(kinds::IMAGE, "vol#axial/3")
            .with_tensor("data", Tensor::from_vec(px, &[rows, cols]));
        item.meta.set(keys::SPACING, [0.5, 2.0]);
        item
    }

    /// The output position (pixel centre) of a source pixel centre, from the recorded metadata.
    fn forward(meta: &Value, src: [f64; 2]) -> [f64; 2] {
        let s = meta["scale"].as_array().unwrap();
        let o = meta["offset"].as_array().unwrap();
        [0, 1].map(|a| o[a].as_f64().unwrap() + (src[a] + 0.5) * s[a].as_f64().unwrap() - 0.5)
    }

    /// The source pixel centre of an output pixel centre, from the recorded metadata.
    fn back(meta: &Value, dst: [f64; 2]) -> [f64; 2] {
        let s = meta["scale"].as_array().unwrap();
        let o = meta["offset"].as_array().unwrap();
        [0, 1].map(|a| (dst[a] - o[a].as_f64().unwrap() + 0.5) / s[a].as_f64().unwrap() - 0.5)
    }

    #[test]
    fn every_output_pixel_maps_back_to_the_source_pixel_it_shows() {
        // Unique values: each output pixel says which source pixel it came from.
        let (rows, cols) = (6, 10);
        let px: Vec<u16> = (0..(rows * cols) as u16).map(|v| v + 100).collect();
        for mode in [ResizeMode::Fit, ResizeMode::Crop, ResizeMode::Pad] {
            let st = stage(
                [16, 16],
                mode,
                Interpolation::Nearest,
                PadValue::Number(0.0),
            );
            let out = st.resize(image(px.clone(), rows, cols)).unwrap();
            let data = out.data().unwrap();
            assert_eq!(data.shape(), [16, 16]);
            assert_eq!(data.dtype(), DType::U16, "nearest keeps the dtype");
            let got: &[u16] = data.as_slice().unwrap();
            let meta = &out.meta.0["resize"];
            assert_eq!(meta["from"], json!([rows, cols]));
            assert_eq!(meta["to"], json!([16, 16]));
            for r in 0..16 {
                for c in 0..16 {
                    let v = got[r * 16 + c];
                    let [sr, sc] = back(meta, [r as f64, c as f64]);
                    let inside = (-0.5..rows as f64 - 0.5).contains(&sr)
                        && (-0.5..cols as f64 - 0.5).contains(&sc);
                    if !inside {
                        assert_eq!(v, 0, "{mode:?} ({r}, {c}) maps outside the source: padding");
                        continue;
                    }
                    if [sr, sc]
                        .iter()
                        .any(|v| (v.fract().abs() - 0.5).abs() < 1e-6)
                    {
                        continue; // exactly between two source pixels: either is right
                    }
                    let want = px[sr.round() as usize * cols + sc.round() as usize];
                    assert_eq!(v, want, "{mode:?} ({r}, {c}) -> ({sr}, {sc})");
                }
            }
            // The source's corner pixels land where the metadata says.
            let corners = [[0.0, 0.0], [(rows - 1) as f64, (cols - 1) as f64]];
            for src in corners {
                let [r, c] = forward(meta, src);
                let [br, bc] = back(meta, [r, c]);
                assert!((br - src[0]).abs() < 1e-9 && (bc - src[1]).abs() < 1e-9);
                if (0.0..16.0).contains(&r) && (0.0..16.0).contains(&c) {
                    let v = got[r.round() as usize * 16 + c.round() as usize];
                    assert_eq!(v, px[src[0] as usize * cols + src[1] as usize], "{mode:?}");
                }
            }
        }
    }

    #[test]
    fn spacing_follows_the_scale_and_a_second_resize_composes() {
        let st = stage(
            [12, 40],
            ResizeMode::Fit,
            Interpolation::Linear,
            PadValue::default(),
        );
        let out = st.resize(image(vec![1.0f32; 6 * 10], 6, 10)).unwrap();
        // Fit: min(12/6, 40/10) = 2 on both axes.
        let sp: Vec<f64> = out.meta.get(keys::SPACING).unwrap();
        assert_eq!(sp, [0.25, 1.0]);
        let first = out.meta.0["resize"].clone();
        assert_eq!(first["scale"], json!([2.0, 2.0]));
        assert_eq!(first["offset"], json!([0.0, 10.0]));
        let again = stage(
            [6, 20],
            ResizeMode::Pad,
            Interpolation::Linear,
            PadValue::Number(0.0),
        );
        let out2 = again.resize(out).unwrap();
        let m = &out2.meta.0["resize"];
        // Pad-crop 12x40 -> 6x20: offset (-3, -10) after the first (0, 10).
        assert_eq!(m["from"], json!([6, 10]));
        assert_eq!(m["scale"], json!([2.0, 2.0]));
        assert_eq!(m["offset"], json!([-3.0, 0.0]));
        assert_eq!(m["mode"], "pad");
    }

    #[test]
    fn label_maps_follow_with_nearest_and_other_shapes_pass_through() {
        let mut item = image(vec![0.0f32, 1.0, 2.0, 3.0], 2, 2);
        item.set_tensor("label", Tensor::from_vec(vec![0u8, 1, 2, 3], &[2, 2]));
        item.set_tensor("extra", Tensor::from_vec(vec![9i32; 3], &[3]));
        let st = stage(
            [4, 4],
            ResizeMode::Fit,
            Interpolation::Linear,
            PadValue::default(),
        );
        let out = st.resize(item).unwrap();
        assert_eq!(out.data().unwrap().dtype(), DType::F32);
        let label = out.tensor("label").unwrap();
        assert_eq!(label.dtype(), DType::U8);
        let l: &[u8] = label.as_slice().unwrap();
        assert_eq!(l, [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]);
        assert_eq!(out.tensor("extra").unwrap().shape(), [3]);
    }

    #[test]
    fn the_output_dtype_depends_on_the_settings_not_the_image() {
        // Fit on an image already the right size still gives float32 with linear.
        let st = stage(
            [2, 2],
            ResizeMode::Fit,
            Interpolation::Linear,
            PadValue::default(),
        );
        let out = st.resize(image(vec![1i16, 2, 3, 4], 2, 2)).unwrap();
        assert_eq!(out.data().unwrap().dtype(), DType::F32);
        let v: &[f32] = out.data().unwrap().as_slice().unwrap();
        assert_eq!(v, [1.0, 2.0, 3.0, 4.0]);
        let pad = stage(
            [3, 3],
            ResizeMode::Pad,
            Interpolation::Linear,
            PadValue::default(),
        );
        let out = pad.resize(image(vec![5i16, 2, 3, 4], 2, 2)).unwrap();
        let v: &[i16] = out.data().unwrap().as_slice().unwrap();
        assert_eq!(v, [5, 2, 2, 3, 4, 2, 2, 2, 2], "padded with the minimum, 2");
    }
}
