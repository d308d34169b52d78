//! `DiffusionUNetResnetBlock`: `h = conv1(silu(norm1 x)) + time_emb_proj(silu emb)`,
//! `out = skip(x) + conv2(silu(norm2 h))`, optionally resampling x and `silu(norm1 x)` (2x2
//! average pool or nearest x2) before conv1.
//!
//! The input may come in channel parts (the up path's `cat([h, skip])`): norm1 writes their
//! normalised concatenation, and the 1x1 skip convolution is a sum of one product per part.
//! conv1 starts from its bias plus the time embedding, conv2 from its bias plus the skip's bias
//! and, for an identity skip, x itself.

use crate::unet::layers::conv::{Conv1x1, Conv3x3, Start, Term, convolve};
use crate::unet::layers::linear::Linear;
use crate::unet::layers::norm::{GroupNorm, NormOut};
use crate::unet::layers::resample::{avg_pool2, upsample_nearest2};
use crate::unet::layers::tensor::{Act, Kind, Workspace};
use crate::unet::weights::Weights;

/// What the block does to the resolution.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Resample {
    Keep,
    /// Nearest-neighbour x2 (`up=True`).
    Up,
    /// 2x2 average pooling (`down=True`).
    Down,
}

/// Channel and normalisation settings shared by every resnet of a model.
#[derive(Clone, Copy)]
pub(crate) struct ResnetShape {
    pub cin: usize,
    pub cout: usize,
    pub temb: usize,
    pub groups: usize,
    pub eps: f64,
    pub resample: Resample,
}

pub(crate) struct ResnetBlock {
    shape: ResnetShape,
    norm1: GroupNorm,
    conv1: Conv3x3,
    time_emb_proj: Linear,
    norm2: GroupNorm,
    conv2: Conv3x3,
    skip: Option<Conv1x1>,
    /// conv2's bias plus the skip convolution's.
    out_bias: Vec<f32>,
}

impl ResnetBlock {
    pub fn load(w: &Weights, shape: ResnetShape) -> anyhow::Result<ResnetBlock> {
        let ResnetShape {
            cin,
            cout,
            temb,
            groups,
            eps,
            resample,
        } = shape;
        assert!(
            resample == Resample::Keep || cin == cout,
            "a resampling resnet keeps its channels"
        );
        let norm1 = GroupNorm::load(&w.pp("norm1"), cin, groups, eps)?;
        let conv1 = Conv3x3::load(&w.pp("conv1").pp("conv"), cin, cout)?;
        let time_emb_proj = Linear::load(&w.pp("time_emb_proj"), temb, cout)?;
        let norm2 = GroupNorm::load(&w.pp("norm2"), cout, groups, eps)?;
        let conv2 = Conv3x3::load(&w.pp("conv2").pp("conv"), cout, cout)?;
        let skip = if cin == cout {
            None
        } else {
            Some(Conv1x1::load(
                &w.pp("skip_connection").pp("conv"),
                cin,
                cout,
            )?)
        };
        let out_bias = match &skip {
            Some(s) => conv2.bias.iter().zip(&s.bias).map(|(a, b)| a + b).collect(),
            None => conv2.bias.clone(),
        };
        Ok(ResnetBlock {
            shape,
            norm1,
            conv1,
            time_emb_proj,
            norm2,
            conv2,
            skip,
            out_bias,
        })
    }

    /// The block applied to the channel concatenation of `parts`; `emb` is `silu` of the time
    /// embedding, `[n][temb]`.
    pub fn forward(&self, parts: &[&Act], emb: &[f32], ws: &mut Workspace) -> Act {
        let ResnetShape {
            cin,
            cout,
            resample,
            ..
        } = self.shape;
        let x = parts[0];
        let (n, h, w) = (x.n, x.h, x.w);
        let mut normed = ws.act(n, h, w, cin);
        let t = ws.clock();
        self.norm1.apply(parts, NormOut::Padded(&mut normed), true);
        ws.record(Kind::GroupNorm, t);
        let t = ws.clock();
        // Resampling blocks keep their channels, so they have one part and no skip conv.
        let (conv_in, resampled) = match resample {
            Resample::Keep => (normed, None),
            Resample::Up => {
                let mut up_h = ws.act(n, 2 * h, 2 * w, cin);
                upsample_nearest2(&normed, &mut up_h);
                let mut up_x = ws.act(n, 2 * h, 2 * w, cin);
                upsample_nearest2(x, &mut up_x);
                ws.recycle(normed);
                (up_h, Some(up_x))
            }
            Resample::Down => {
                let mut down_h = ws.act(n, h / 2, w / 2, cin);
                avg_pool2(&normed, &mut down_h);
                let mut down_x = ws.act(n, h / 2, w / 2, cin);
                avg_pool2(x, &mut down_x);
                ws.recycle(normed);
                (down_h, Some(down_x))
            }
        };
        ws.record(Kind::Resample, t);
        let (oh, ow) = (conv_in.h, conv_in.w);
        let t = ws.clock();
        let temb = self.time_emb_proj.small(emb);
        ws.record(Kind::Other, t);
        let mut hidden = ws.act(n, oh, ow, cout);
        let t = ws.clock();
        let start = Start {
            bias: &self.conv1.bias,
            per_image: Some(&temb),
            residual: None,
        };
        convolve(&mut hidden, start, &[Term::Conv3(&self.conv1, &conv_in)]);
        ws.record(Kind::Conv3x3, t);
        ws.recycle(conv_in);
        let mut normed = ws.act(n, oh, ow, cout);
        let t = ws.clock();
        self.norm2
            .apply(&[&hidden], NormOut::Padded(&mut normed), true);
        ws.record(Kind::GroupNorm, t);
        ws.recycle(hidden);

        let mut out = ws.act(n, oh, ow, cout);
        let x_parts: Vec<&Act> = match &resampled {
            Some(r) => vec![r],
            None => parts.to_vec(),
        };
        let mut terms = vec![Term::Conv3(&self.conv2, &normed)];
        let mut residual = None;
        match &self.skip {
            Some(skip) => {
                let mut from = 0;
                for part in &x_parts {
                    terms.push(Term::Conv1(skip.input_rows(from, part.c), part));
                    from += part.c;
                }
            }
            None => {
                assert_eq!(x_parts.len(), 1, "an identity skip has one input part");
                residual = Some(x_parts[0]);
            }
        }
        let start = Start {
            bias: &self.out_bias,
            per_image: None,
            residual,
        };
        let t = ws.clock();
        convolve(&mut out, start, &terms);
        ws.record(Kind::Conv3x3, t);
        drop(terms);
        ws.recycle(normed);
        if let Some(r) = resampled {
            ws.recycle(r);
        }
        out
    }
}
