//! The plain down- and upsamplers: a stride-2 3x3 convolution (`downsampler.op.conv`), and
//! nearest x2 followed by a 3x3 convolution (`upsampler.postconv.conv`).

use crate::unet::layers::conv::{Conv3x3, Start, Term, conv3x3_stride2, convolve};
use crate::unet::layers::resample::upsample_nearest2;
use crate::unet::layers::tensor::{Act, Kind, Workspace};
use crate::unet::weights::Weights;

pub(crate) struct Downsample {
    conv: Conv3x3,
}

impl Downsample {
    /// `w` is the downsampler (`op.conv` below it).
    pub fn load(w: &Weights, channels: usize) -> anyhow::Result<Downsample> {
        let conv = Conv3x3::load(&w.pp("op").pp("conv"), channels, channels)?;
        Ok(Downsample { conv })
    }

    pub fn forward(&self, x: &Act, ws: &mut Workspace) -> Act {
        let mut out = ws.act(x.n, x.h.div_ceil(2), x.w.div_ceil(2), self.conv.cout);
        let t = ws.clock();
        conv3x3_stride2(&self.conv, x, &mut out);
        ws.record(Kind::ConvStride2, t);
        out
    }
}

pub(crate) struct Upsample {
    conv: Conv3x3,
}

impl Upsample {
    /// `w` is the upsampler (`postconv.conv` below it).
    pub fn load(w: &Weights, channels: usize) -> anyhow::Result<Upsample> {
        let conv = Conv3x3::load(&w.pp("postconv").pp("conv"), channels, channels)?;
        Ok(Upsample { conv })
    }

    pub fn forward(&self, x: &Act, ws: &mut Workspace) -> Act {
        let mut up = ws.act(x.n, 2 * x.h, 2 * x.w, x.c);
        let t = ws.clock();
        upsample_nearest2(x, &mut up);
        ws.record(Kind::Resample, t);
        let mut out = ws.act(x.n, 2 * x.h, 2 * x.w, self.conv.cout);
        let t = ws.clock();
        convolve(
            &mut out,
            Start::bias(&self.conv.bias),
            &[Term::Conv3(&self.conv, &up)],
        );
        ws.record(Kind::Conv3x3, t);
        ws.recycle(up);
        out
    }
}
