//! The UNet's levels: down blocks (resnets, attention, downsampler), the middle block, up
//! blocks (resnets on `cat([h, skip])`, attention, upsampler). Each pushes onto or pops from
//! the skip stack exactly as MONAI's `DownBlock`/`AttnDownBlock`/`UpBlock`/`AttnUpBlock`.

pub(crate) mod attention;
pub(crate) mod resnet;
pub(crate) mod sampling;

use attention::{AttentionBlock, AttentionShape};
use resnet::{Resample, ResnetBlock, ResnetShape};
use sampling::{Downsample, Upsample};

use crate::unet::layers::tensor::{Act, Workspace};
use crate::unet::weights::Weights;

/// Settings every block of one model shares.
#[derive(Clone, Copy)]
pub(crate) struct Common {
    pub temb: usize,
    pub groups: usize,
    pub eps: f64,
    pub resblock_updown: bool,
    pub include_fc: bool,
    pub combined: bool,
}

impl Common {
    fn resnet(&self, cin: usize, cout: usize, resample: Resample) -> ResnetShape {
        ResnetShape {
            cin,
            cout,
            temb: self.temb,
            groups: self.groups,
            eps: self.eps,
            resample,
        }
    }

    fn attention(&self, channels: usize, head_channels: usize) -> AttentionShape {
        AttentionShape {
            channels,
            head_channels,
            groups: self.groups,
            eps: self.eps,
            include_fc: self.include_fc,
            combined: self.combined,
        }
    }
}

/// One level's plan: channels in and out, resnets, attention heads (if any), resampler.
pub(crate) struct Level {
    pub cin: usize,
    pub cout: usize,
    pub res_blocks: usize,
    /// Channels per head where the level has attention.
    pub head_channels: Option<usize>,
    pub resample: bool,
}

enum Down {
    Conv(Downsample),
    Resnet(Box<ResnetBlock>),
}

pub(crate) struct DownBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<AttentionBlock>,
    downsampler: Option<Down>,
}

impl DownBlock {
    pub fn load(w: &Weights, level: &Level, common: &Common) -> anyhow::Result<DownBlock> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for j in 0..level.res_blocks {
            let cin = if j == 0 { level.cin } else { level.cout };
            let shape = common.resnet(cin, level.cout, Resample::Keep);
            resnets.push(ResnetBlock::load(&w.pp("resnets").pp(j), shape)?);
            if let Some(hc) = level.head_channels {
                let shape = common.attention(level.cout, hc);
                attentions.push(AttentionBlock::load(&w.pp("attentions").pp(j), shape)?);
            }
        }
        let downsampler = match (level.resample, common.resblock_updown) {
            (false, _) => None,
            (true, false) => Some(Down::Conv(Downsample::load(
                &w.pp("downsampler"),
                level.cout,
            )?)),
            (true, true) => {
                let shape = common.resnet(level.cout, level.cout, Resample::Down);
                Some(Down::Resnet(Box::new(ResnetBlock::load(
                    &w.pp("downsampler"),
                    shape,
                )?)))
            }
        };
        Ok(DownBlock {
            resnets,
            attentions,
            downsampler,
        })
    }

    /// Reads the top of `skips` and pushes each resnet (or attention) output and the
    /// downsampler's output.
    pub fn forward(&self, skips: &mut Vec<Act>, emb: &[f32], ws: &mut Workspace) {
        for (j, resnet) in self.resnets.iter().enumerate() {
            let h = resnet.forward(&[skips.last().expect("skip stack")], emb, ws);
            let h = match self.attentions.get(j) {
                Some(attn) => {
                    let a = attn.forward(&h, ws);
                    ws.recycle(h);
                    a
                }
                None => h,
            };
            skips.push(h);
        }
        let x = skips.last().expect("skip stack");
        let down = match &self.downsampler {
            None => return,
            Some(Down::Conv(d)) => d.forward(x, ws),
            Some(Down::Resnet(r)) => r.forward(&[x], emb, ws),
        };
        skips.push(down);
    }
}

pub(crate) struct MidBlock {
    resnet_1: ResnetBlock,
    attention: AttentionBlock,
    resnet_2: ResnetBlock,
}

impl MidBlock {
    pub fn load(
        w: &Weights,
        channels: usize,
        head_channels: usize,
        common: &Common,
    ) -> anyhow::Result<MidBlock> {
        let shape = common.resnet(channels, channels, Resample::Keep);
        Ok(MidBlock {
            resnet_1: ResnetBlock::load(&w.pp("resnet_1"), shape)?,
            attention: AttentionBlock::load(
                &w.pp("attention"),
                common.attention(channels, head_channels),
            )?,
            resnet_2: ResnetBlock::load(&w.pp("resnet_2"), shape)?,
        })
    }

    pub fn forward(&self, x: &Act, emb: &[f32], ws: &mut Workspace) -> Act {
        let h = self.resnet_1.forward(&[x], emb, ws);
        let a = self.attention.forward(&h, ws);
        ws.recycle(h);
        let out = self.resnet_2.forward(&[&a], emb, ws);
        ws.recycle(a);
        out
    }
}

enum Up {
    Conv(Upsample),
    Resnet(Box<ResnetBlock>),
}

pub(crate) struct UpBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<AttentionBlock>,
    upsampler: Option<Up>,
}

/// An up level's plan: `Level` plus the channels arriving from below and the channels of the
/// skip that the last resnet takes.
pub(crate) struct UpLevel {
    pub level: Level,
    pub prev_out: usize,
    pub last_skip: usize,
}

impl UpBlock {
    pub fn load(w: &Weights, up: &UpLevel, common: &Common) -> anyhow::Result<UpBlock> {
        let level = &up.level;
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for j in 0..level.res_blocks {
            let skip = if j == level.res_blocks - 1 {
                up.last_skip
            } else {
                level.cout
            };
            let from_below = if j == 0 { up.prev_out } else { level.cout };
            let shape = common.resnet(from_below + skip, level.cout, Resample::Keep);
            resnets.push(ResnetBlock::load(&w.pp("resnets").pp(j), shape)?);
            if let Some(hc) = level.head_channels {
                let shape = common.attention(level.cout, hc);
                attentions.push(AttentionBlock::load(&w.pp("attentions").pp(j), shape)?);
            }
        }
        let upsampler = match (level.resample, common.resblock_updown) {
            (false, _) => None,
            (true, false) => Some(Up::Conv(Upsample::load(&w.pp("upsampler"), level.cout)?)),
            (true, true) => {
                let shape = common.resnet(level.cout, level.cout, Resample::Up);
                Some(Up::Resnet(Box::new(ResnetBlock::load(
                    &w.pp("upsampler"),
                    shape,
                )?)))
            }
        };
        Ok(UpBlock {
            resnets,
            attentions,
            upsampler,
        })
    }

    /// Each resnet takes `cat([h, skips.pop()])`.
    pub fn forward(
        &self,
        mut h: Act,
        skips: &mut Vec<Act>,
        emb: &[f32],
        ws: &mut Workspace,
    ) -> Act {
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("skip stack");
            let next = resnet.forward(&[&h, &skip], emb, ws);
            ws.recycle(skip);
            ws.recycle(std::mem::replace(&mut h, next));
            if let Some(attn) = self.attentions.get(j) {
                let a = attn.forward(&h, ws);
                ws.recycle(std::mem::replace(&mut h, a));
            }
        }
        let up = match &self.upsampler {
            None => return h,
            Some(Up::Conv(u)) => u.forward(&h, ws),
            Some(Up::Resnet(r)) => r.forward(&[&h], emb, ws),
        };
        ws.recycle(h);
        up
    }
}
