//! `SpatialAttentionBlock`: `x + out_proj(attention(norm(x)))` over the h*w pixels as tokens.
//! Separate q/k/v projections are packed side by side at load, which is exactly the layout of
//! the combined `qkv` layer (`(qkv, heads, head_dim)` along the outputs), so both run as one
//! GEMM.

use crate::unet::layers::attention::{attention, keys_len};
use crate::unet::layers::linear::Linear;
use crate::unet::layers::norm::{GroupNorm, NormOut};
use crate::unet::layers::simd;
use crate::unet::layers::tensor::{Act, Kind, Workspace};
use crate::unet::weights::Weights;

use rayon::prelude::*;

/// How a model's attention blocks are built.
#[derive(Clone, Copy)]
pub(crate) struct AttentionShape {
    pub channels: usize,
    pub head_channels: usize,
    pub groups: usize,
    pub eps: f64,
    /// `attn.out_proj` exists.
    pub include_fc: bool,
    /// `attn.qkv` instead of `attn.to_q`, `attn.to_k`, `attn.to_v`.
    pub combined: bool,
}

pub(crate) struct AttentionBlock {
    c: usize,
    heads: usize,
    norm: GroupNorm,
    qkv: Linear,
    out_proj: Option<Linear>,
}

impl AttentionBlock {
    pub fn load(w: &Weights, shape: AttentionShape) -> anyhow::Result<AttentionBlock> {
        let c = shape.channels;
        let norm = GroupNorm::load(&w.pp("norm"), c, shape.groups, shape.eps)?;
        let attn = w.pp("attn");
        let qkv = if shape.combined {
            Linear::load(&attn.pp("qkv"), c, 3 * c)?
        } else {
            Linear::concat(&[
                Linear::load(&attn.pp("to_q"), c, c)?,
                Linear::load(&attn.pp("to_k"), c, c)?,
                Linear::load(&attn.pp("to_v"), c, c)?,
            ])
        };
        let out_proj = match shape.include_fc {
            true => Some(Linear::load(&attn.pp("out_proj"), c, c)?),
            false => None,
        };
        Ok(AttentionBlock {
            c,
            heads: c / shape.head_channels,
            norm,
            qkv,
            out_proj,
        })
    }

    pub fn forward(&self, x: &Act, ws: &mut Workspace) -> Act {
        let (n, h, w, c) = (x.n, x.h, x.w, self.c);
        assert_eq!(x.c, c, "attention channels");
        let l = h * w;
        let mut tokens = ws.take(n * l * c);
        let t = ws.clock();
        self.norm.apply(&[x], NormOut::Dense(&mut tokens), false);
        ws.record(Kind::GroupNorm, t);
        let mut qkv = ws.take(n * l * 3 * c);
        let t = ws.clock();
        self.qkv.rows(&tokens, &mut qkv);
        ws.record(Kind::Linear, t);
        // The normalised tokens are spent: their buffer takes the heads' outputs.
        let t = ws.clock();
        let mut keys = ws.take(keys_len(n, l, c));
        attention(
            &qkv,
            &mut tokens,
            &mut keys,
            n,
            l,
            self.heads,
            c / self.heads,
        );
        ws.give(keys);
        ws.record(Kind::Attention, t);
        let t = ws.clock();
        if let Some(proj) = &self.out_proj {
            proj.rows(&tokens, &mut qkv[..n * l * c]);
        }
        ws.record(Kind::Linear, t);
        let y = match &self.out_proj {
            Some(_) => &qkv[..n * l * c],
            None => &tokens[..],
        };
        let mut out = ws.act(n, h, w, c);
        let t = ws.clock();
        let pw = out.pw();
        out.data
            .par_chunks_mut(pw * c)
            .enumerate()
            .for_each(|(r, row)| {
                let (img, yy) = (r / (h + 2), r % (h + 2));
                if yy == 0 || yy == h + 1 {
                    row.fill(0.0);
                    return;
                }
                row[..c].fill(0.0);
                row[(pw - 1) * c..].fill(0.0);
                let from = x.at(img, yy, 1);
                let t = (img * l + (yy - 1) * w) * c;
                simd::add(
                    &x.data[from..from + w * c],
                    &y[t..t + w * c],
                    &mut row[c..(pw - 1) * c],
                );
            });
        ws.record(Kind::Other, t);
        ws.give(qkv);
        ws.give(tokens);
        out
    }
}
