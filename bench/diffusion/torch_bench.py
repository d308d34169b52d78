#!/usr/bin/env python3
"""PyTorch/MONAI side of the diffusion benchmark: DDIM sampling with a Mindscan model directory.

  bench/.venv-torch/bin/python bench/diffusion/torch_bench.py --model pipelines/models/brain-ddpm-64 \
      --size 64 --batch 8 --steps 50 --threads 2 --mode monai --runs 3 --json

Builds MONAI's DiffusionModelUNet from DIR/config.json + DIR/model.safetensors, makes fixed noise
[batch, in_channels, size, size] (torch seed 0) and runs MONAI's DDIMScheduler (the model's training
scheduler kwargs, set_timesteps(--steps), eta 0) exactly as MONAI's tutorials do:
    for t in scheduler.timesteps: x, _ = scheduler.step(model(x, timesteps=full((n,), t)), t, x)
One short untimed warm-up run (3 steps), then --runs timed runs; prints the median.  The model is fully convolutional,
so --size 128 runs the 64x64-trained weights at 128x128.

Modes:
  monai  MONAI's defaults: NCHW (contiguous), use_flash_attention=False, under torch.no_grad().
  best   the fastest CPU setting measured on the 2-core development machine (torch 2.15, MONAI 1.6.1):
         torch.inference_mode(), use_flash_attention=True (PyTorch's fused scaled_dot_product_attention,
         same maths as MONAI's explicit softmax(QK^T)V) and channels_last model + input.  Measured in one
         process, settings interleaved, DDIM-10 of batch 8 at 64x64, 2 threads, per forward, fastest /
         median of 3 (the machine was shared with Rust builds, hence the spread): MONAI default
         343 / 802 ms; inference_mode 346 / 416; + channels_last 331 / 390; + flash 225 / 281;
         + flash + channels_last 232 / 248 (chosen: best median; samples within 4e-5 of MONAI's).
         torch.compile (inductor, flash + channels_last) took 98 s to compile and was not measurably
         faster under that load, so it is not part of "best" (it also needs a C++ compiler at run time).
         Other settings can be tried with --mode custom and --flash/--channels-last/--compile/
         --inference-mode.
JSON line: {"impl": "pytorch", "mode", "size", "batch", "steps", "threads", "seconds" (median of one full
DDIM run), "images_per_s" (batch / seconds), "forward_ms" (median of the per-forward medians), "runs",
"settings", "torch", "monai"}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "libraries", "diffusion", "tools"))
import mindscan_export as mx  # noqa: E402

BEST = {"inference_mode": True, "flash": True, "channels_last": True, "compile": False}
MONAI = {"inference_mode": False, "flash": False, "channels_last": False, "compile": False}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(REPO, "pipelines", "models", "brain-ddpm-64"))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", choices=["monai", "best", "custom"], default="monai")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--flash", action="store_true", help="custom: use_flash_attention=True")
    ap.add_argument("--channels-last", action="store_true", help="custom: channels_last model and input")
    ap.add_argument("--compile", action="store_true", help="custom: torch.compile the model")
    ap.add_argument("--inference-mode", action="store_true", help="custom: torch.inference_mode instead of no_grad")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if args.mode == "custom":
        settings = {"inference_mode": args.inference_mode, "flash": args.flash,
                    "channels_last": args.channels_last, "compile": args.compile}
    else:
        settings = dict(BEST if args.mode == "best" else MONAI)

    model, cfg = mx.load_model_dir(args.model, use_flash_attention=settings["flash"])
    fmt = torch.channels_last if settings["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=fmt)
    net = torch.compile(model) if settings["compile"] else model
    sched = mx.ddim_scheduler(cfg["scheduler"])
    sched.set_timesteps(args.steps)
    noise = torch.randn((args.batch, cfg["in_channels"], args.size, args.size),
                        generator=torch.Generator().manual_seed(0)).to(memory_format=fmt)
    grad_ctx = torch.inference_mode if settings["inference_mode"] else torch.no_grad

    def sample() -> tuple[float, list[float]]:
        fwd = []
        with grad_ctx():
            x = noise.clone(memory_format=fmt)
            start = time.perf_counter()
            for t in sched.timesteps:
                f0 = time.perf_counter()
                out = net(x, timesteps=torch.full((args.batch,), t))
                fwd.append(time.perf_counter() - f0)
                x, _ = sched.step(out, t, x)
            total = time.perf_counter() - start
        assert torch.isfinite(x).all()
        return total, fwd

    for _ in range(args.warmup):  # warm-up: a short run (allocator, oneDNN primitives, compile)
        steps = sched.timesteps
        sched.timesteps = steps[: min(len(steps), 3)]
        sample()
        sched.timesteps = steps
    totals, fwd_medians = [], []
    for _ in range(args.runs):
        total, fwd = sample()
        totals.append(total)
        fwd_medians.append(statistics.median(fwd))
    seconds = statistics.median(totals)

    import monai

    res = {"impl": "pytorch", "mode": args.mode, "size": args.size, "batch": args.batch, "steps": args.steps,
           "threads": args.threads, "seconds": seconds, "images_per_s": args.batch / seconds,
           "forward_ms": statistics.median(fwd_medians) * 1e3, "runs": totals, "settings": settings,
           "torch": torch.__version__, "monai": monai.__version__}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"pytorch {args.mode} DDIM-{args.steps} {args.size}x{args.size} batch {args.batch}: {seconds:.3f} s "
              f"({res['images_per_s']:.2f} images/s, {res['forward_ms']:.1f} ms per forward) {settings}")


if __name__ == "__main__":
    main()
