//! `DiffusionModelUNet.forward`: time (and class) embedding, `conv_in`, the down path filling
//! the skip stack, the middle block, the up path emptying it, then GroupNorm -> SiLU -> conv.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, bail, ensure};

use super::blocks::{Common, DownBlock, Level, MidBlock, UpBlock, UpLevel};
use super::config::UNetConfig;
use super::layers::conv::{Conv3x3, Start, Term, convolve};
use super::layers::linear::Linear;
use super::layers::norm::{GroupNorm, NormOut};
use super::layers::simd;
use super::layers::tensor::{Act, Kind, Workspace};
use super::weights::{WeightStore, Weights};

/// The layers, built from a config and its weights.
pub(crate) struct Network {
    in_channels: usize,
    out_channels: usize,
    embed_dim: usize,
    conv_in: Conv3x3,
    time_embed: (Linear, Linear),
    /// `[classes][4 * channels[0]]`.
    class_embedding: Option<Vec<f32>>,
    down: Vec<DownBlock>,
    middle: MidBlock,
    up: Vec<UpBlock>,
    out_norm: GroupNorm,
    out_conv: Conv3x3,
}

impl Network {
    /// Builds every layer, asking `w` for each tensor by its MONAI name; the channel
    /// bookkeeping follows `DiffusionModelUNet.__init__`.
    pub fn load(config: &UNetConfig, w: &Weights) -> anyhow::Result<Network> {
        let ch = &config.channels;
        let levels = ch.len();
        let temb = config.time_embed_dim();
        let common = Common {
            temb,
            groups: config.norm_num_groups,
            eps: config.norm_eps,
            resblock_updown: config.resblock_updown,
            include_fc: config.include_fc,
            combined: config.use_combined_linear,
        };
        let heads_at =
            |i: usize| config.attention_levels[i].then(|| config.num_head_channels.at(i));
        let conv_in = Conv3x3::load(&w.pp("conv_in").pp("conv"), config.in_channels, ch[0])?;
        let time = w.pp("time_embed");
        let time_embed = (
            Linear::load(&time.pp(0), ch[0], temb)?,
            Linear::load(&time.pp(2), temb, temb)?,
        );
        let class_embedding = match config.num_class_embeds {
            Some(classes) => Some(w.pp("class_embedding").get("weight", &[classes, temb])?),
            None => None,
        };
        let mut down = Vec::new();
        for i in 0..levels {
            let level = Level {
                cin: if i == 0 { ch[0] } else { ch[i - 1] },
                cout: ch[i],
                res_blocks: config.num_res_blocks.at(i),
                head_channels: heads_at(i),
                resample: i + 1 < levels,
            };
            down.push(DownBlock::load(
                &w.pp("down_blocks").pp(i),
                &level,
                &common,
            )?);
        }
        let middle = MidBlock::load(
            &w.pp("middle_block"),
            ch[levels - 1],
            config.num_head_channels.at(levels - 1),
            &common,
        )?;
        let mut up = Vec::new();
        let mut out = ch[levels - 1];
        for i in 0..levels {
            let rev = levels - 1 - i;
            let prev_out = out;
            out = ch[rev];
            let level = Level {
                cin: prev_out,
                cout: out,
                res_blocks: config.num_res_blocks.at(rev) + 1,
                head_channels: heads_at(rev),
                resample: i + 1 < levels,
            };
            let plan = UpLevel {
                level,
                prev_out,
                last_skip: ch[rev.saturating_sub(1)],
            };
            up.push(UpBlock::load(&w.pp("up_blocks").pp(i), &plan, &common)?);
        }
        let out_w = w.pp("out");
        let out_norm =
            GroupNorm::load(&out_w.pp(0), ch[0], config.norm_num_groups, config.norm_eps)?;
        let out_conv = Conv3x3::load(&out_w.pp(2).pp("conv"), ch[0], config.out_channels)?;
        Ok(Network {
            in_channels: config.in_channels,
            out_channels: config.out_channels,
            embed_dim: ch[0],
            conv_in,
            time_embed,
            class_embedding,
            down,
            middle,
            up,
            out_norm,
            out_conv,
        })
    }

    /// `silu(time_embed(sinusoid(t)) + class_embedding(label))`, `[n][4 * channels[0]]`: the
    /// input of every resnet's `time_emb_proj`.
    fn embedding(&self, t: &[f32], labels: Option<&[u32]>) -> Vec<f32> {
        let dim = self.embed_dim;
        let half = dim / 2;
        // MONAI: exp(-ln(10000) * arange(half) / half) in float32; cos then sin of t * freq.
        let freqs: Vec<f32> = (0..half)
            .map(|i| {
                let exponent = (-(10000f64.ln()) as f32) * i as f32 / half as f32;
                (exponent as f64).exp() as f32
            })
            .collect();
        let mut sinusoid = vec![0.0f32; t.len() * dim];
        for (row, &step) in sinusoid.chunks_exact_mut(dim).zip(t) {
            for (i, &f) in freqs.iter().enumerate() {
                let arg = (step * f) as f64;
                row[i] = arg.cos() as f32;
                row[half + i] = arg.sin() as f32;
            }
        }
        let mut hidden = self.time_embed.0.small(&sinusoid);
        simd::silu_in_place(&mut hidden);
        let mut emb = self.time_embed.1.small(&hidden);
        if let (Some(table), Some(labels)) = (&self.class_embedding, labels) {
            let temb = 4 * dim;
            for (row, &label) in emb.chunks_exact_mut(temb).zip(labels) {
                let class = &table[label as usize * temb..(label as usize + 1) * temb];
                row.iter_mut().zip(class).for_each(|(e, c)| *e += c);
            }
        }
        simd::silu_in_place(&mut emb);
        emb
    }

    /// The network on `x` (NCHW), result into `out` (NCHW).
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        ws: &mut Workspace,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        t: &[f32],
        labels: Option<&[u32]>,
        out: &mut [f32],
    ) {
        let clock = ws.clock();
        let emb = self.embedding(t, labels);
        let mut input = ws.act(n, h, w, self.in_channels);
        nchw_to_padded(x, &mut input);
        ws.record(Kind::Other, clock);

        let mut h0 = ws.act(n, h, w, self.conv_in.cout);
        let clock = ws.clock();
        convolve(
            &mut h0,
            Start::bias(&self.conv_in.bias),
            &[Term::Conv3(&self.conv_in, &input)],
        );
        ws.record(Kind::Conv3x3, clock);
        ws.recycle(input);

        let mut skips = vec![h0];
        for block in &self.down {
            block.forward(&mut skips, &emb, ws);
        }
        let mut hidden = self
            .middle
            .forward(skips.last().expect("skip stack"), &emb, ws);
        for block in &self.up {
            hidden = block.forward(hidden, &mut skips, &emb, ws);
        }
        debug_assert!(skips.is_empty());

        let mut normed = ws.act(n, h, w, hidden.c);
        let clock = ws.clock();
        self.out_norm
            .apply(&[&hidden], NormOut::Padded(&mut normed), true);
        ws.record(Kind::GroupNorm, clock);
        ws.recycle(hidden);
        let mut result = ws.act(n, h, w, self.out_channels);
        let clock = ws.clock();
        convolve(
            &mut result,
            Start::bias(&self.out_conv.bias),
            &[Term::Conv3(&self.out_conv, &normed)],
        );
        ws.record(Kind::Conv3x3, clock);
        ws.recycle(normed);
        let clock = ws.clock();
        padded_to_nchw(&result, out);
        ws.record(Kind::Other, clock);
        ws.recycle(result);
    }
}

fn nchw_to_padded(x: &[f32], act: &mut Act) {
    let (n, c, h, w) = (act.n, act.c, act.h, act.w);
    act.data.fill(0.0);
    for img in 0..n {
        for ch in 0..c {
            for y in 0..h {
                let src = &x[((img * c + ch) * h + y) * w..][..w];
                let at = act.at(img, y + 1, 1) + ch;
                for (i, &v) in src.iter().enumerate() {
                    act.data[at + i * c] = v;
                }
            }
        }
    }
}

fn padded_to_nchw(act: &Act, out: &mut [f32]) {
    let (n, c, h, w) = (act.n, act.c, act.h, act.w);
    for img in 0..n {
        for ch in 0..c {
            for y in 0..h {
                let dst = &mut out[((img * c + ch) * h + y) * w..][..w];
                let at = act.at(img, y + 1, 1) + ch;
                for (i, v) in dst.iter_mut().enumerate() {
                    *v = act.data[at + i * c];
                }
            }
        }
    }
}

/// MONAI's 2D `DiffusionModelUNet`, float32 on the CPU. Immutable once loaded; share it between
/// threads and give each caller its own `Workspace`.
pub struct UNet {
    config: UNetConfig,
    net: Network,
    /// Workspaces of earlier `forward` calls, so that repeated calls (a sampler's steps) reuse
    /// their buffers; one per concurrent caller.
    spare: Mutex<Vec<Workspace>>,
}

impl UNet {
    /// Loads `dir/config.json` and `dir/model.safetensors`.
    pub fn load_dir(dir: &Path) -> anyhow::Result<UNet> {
        let config = UNetConfig::from_file(&dir.join("config.json"))?;
        UNet::load(config, &dir.join("model.safetensors"))
    }

    /// Builds the model of `config` from a safetensors file with exactly its tensors (MONAI
    /// state-dict names, or those of MONAI GenerativeModels).
    pub fn load(config: UNetConfig, weights: &Path) -> anyhow::Result<UNet> {
        config.validate().context("unsupported UNet config")?;
        let store = WeightStore::open(weights)?;
        let net = Network::load(&config, &store.root())?;
        store.finish()?;
        Ok(UNet::new(config, net))
    }

    /// The model of `config` with deterministic pseudo-random weights (benchmarks, tests).
    pub fn random(config: UNetConfig, seed: u64) -> anyhow::Result<UNet> {
        config.validate().context("unsupported UNet config")?;
        let store = WeightStore::random(seed);
        let net = Network::load(&config, &store.root())?;
        Ok(UNet::new(config, net))
    }

    pub(crate) fn new(config: UNetConfig, net: Network) -> UNet {
        UNet {
            config,
            net,
            spare: Mutex::new(Vec::new()),
        }
    }

    /// The config the model was built from.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// The network's output for `x`: NCHW `[n, in_channels, h, w]` (h and w multiples of
    /// `2^(levels - 1)`); `t`: n timesteps (MONAI casts them to float32); `class_labels`: n
    /// labels iff the model has `num_class_embeds`. Returns NCHW `[n, out_channels, h, w]`.
    ///
    /// Buffers are kept between calls (one set per concurrent caller) and reused when the
    /// shapes repeat; `forward_into` takes the workspace from the caller instead.
    pub fn forward(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        t: &[f32],
        class_labels: Option<&[u32]>,
    ) -> anyhow::Result<Vec<f32>> {
        let mut out = vec![0.0; n * self.config.out_channels * h * w];
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut ws = spare.unwrap_or_default();
        let result = self.forward_into(&mut ws, x, n, h, w, t, class_labels, &mut out);
        self.spare
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ws);
        result.map(|()| out)
    }

    /// `forward` into `out`, taking its buffers from `ws` (keep one per caller: from the
    /// second call with the same shapes on, nothing is allocated). Runs on the current rayon
    /// pool.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_into(
        &self,
        ws: &mut Workspace,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        t: &[f32],
        class_labels: Option<&[u32]>,
        out: &mut [f32],
    ) -> anyhow::Result<()> {
        let c = &self.config;
        let multiple = c.size_multiple();
        ensure!(n > 0, "UNet forward: empty batch");
        ensure!(
            h > 0 && w > 0 && h.is_multiple_of(multiple) && w.is_multiple_of(multiple),
            "UNet forward: {h}x{w} is not a multiple of {multiple} (2^(levels - 1)) each way"
        );
        ensure!(
            x.len() == n * c.in_channels * h * w,
            "UNet forward: x holds {} values, expected [{n}, {}, {h}, {w}]",
            x.len(),
            c.in_channels
        );
        ensure!(
            t.len() == n,
            "UNet forward: {} timesteps for a batch of {n}",
            t.len()
        );
        ensure!(
            out.len() == n * c.out_channels * h * w,
            "UNet forward: output holds {} values, expected [{n}, {}, {h}, {w}]",
            out.len(),
            c.out_channels
        );
        match (c.num_class_embeds, class_labels) {
            (Some(classes), Some(labels)) => {
                ensure!(
                    labels.len() == n,
                    "UNet forward: {} class labels for a batch of {n}",
                    labels.len()
                );
                if let Some(bad) = labels.iter().find(|&&l| l as usize >= classes) {
                    bail!(
                        "UNet forward: class label {bad} out of range (num_class_embeds {classes})"
                    );
                }
            }
            (Some(_), None) => {
                bail!("UNet forward: class_labels are required (num_class_embeds is set)")
            }
            (None, Some(_)) => {
                bail!("UNet forward: class_labels given but the model has no num_class_embeds")
            }
            (None, None) => {}
        }
        self.net.forward(ws, x, n, h, w, t, class_labels, out);
        Ok(())
    }
}
