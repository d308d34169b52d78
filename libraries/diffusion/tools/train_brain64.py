#!/usr/bin/env python3
"""Train the small real DDPM of Mindscan on 64x64 axial brain slices and write pipelines/models/brain-ddpm-64/.

Data (all real, from shared/data, see its MANIFEST.md):
  * MNI ICBM152 2009a symmetric T1 template (nilearn copy), 197x233x189 at 1 mm
  * GE MR750 EPI fMRI (dcm2niix reference NIfTI), 64x64x15 x 10 volumes
(The Siemens Skyra "EPI mosaic" series is NOT used: its slices show a spherical phantom, not a head.)
Each volume is reoriented to RAS, cut into axial slices (radiological view: anterior up, patient's
right on the image left), near-empty slices are skipped, each slice is padded to a square (keeps the
aspect; all in-plane voxels are square), resampled to 64x64 (bilinear, antialiased) and scaled per slice
with robust percentiles 0.5/99.5 -> [-1, 1] (clipped).

Model: MONAI DiffusionModelUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(32,64,64),
attention_levels=(False,True,True), num_res_blocks=1, num_head_channels=64) (1.16 M parameters),
DDPMScheduler(num_train_timesteps=1000) linear_beta defaults, epsilon prediction, MSE loss, AdamW (lr 5e-4,
batch 8),
left-right flips, fixed seeds, 2 torch threads, a wall-clock budget (--minutes). An exponential moving
average of the weights (--ema) is what gets exported.

  bench/.venv-torch/bin/python libraries/diffusion/tools/train_brain64.py --minutes 12
  # continue from the checkpoint for more minutes:
  bench/.venv-torch/bin/python libraries/diffusion/tools/train_brain64.py --minutes 10 --resume
  # only evaluate / export the checkpoint:
  bench/.venv-torch/bin/python libraries/diffusion/tools/train_brain64.py --minutes 0 --resume
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, HERE)
import mindscan_export as mx  # noqa: E402

SIZE = 64
UNET_KWARGS = dict(spatial_dims=2, in_channels=1, out_channels=1, channels=(32, 64, 64),
                   attention_levels=(False, True, True), num_res_blocks=1, num_head_channels=64)
SCHEDULER_KWARGS = dict(num_train_timesteps=1000, schedule="linear_beta", beta_start=1e-4, beta_end=2e-2,
                        prediction_type="epsilon", clip_sample=True, clip_sample_min=-1.0, clip_sample_max=1.0,
                        variance_type="fixed_small", set_alpha_to_one=True, steps_offset=0)


def default_data_root() -> str:
    for cand in (os.path.join(REPO, "shared", "data"), "/work/shared/data"):
        if os.path.isfile(os.path.join(cand, "MANIFEST.md")):
            return cand
    return "/work/shared/data"


def sources(root: str) -> list[str]:
    files = [os.path.join(root, "nifti", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")]
    # the GE EPI series' dcm2niix reference.  Not used: the XA30 "T1" series (a phantom, says MANIFEST.md)
    # and the Siemens Skyra "EPI mosaic" series, whose 10 slices show a spherical phantom, not a head.
    files += sorted(glob.glob(os.path.join(root, "dicom", "series", "GE_MR750_EPI_fMRI_*", "Ref", "*.nii")))
    missing = [f for f in files if not os.path.isfile(f)]
    if missing or len(files) < 2:
        raise SystemExit(f"training data missing under {root}: {missing or 'EPI references'}")
    return files


def to_square_64(sl: np.ndarray) -> np.ndarray:
    """Pad to a square (centred, with the slice minimum) and resample to 64x64."""
    h, w = sl.shape
    n = max(h, w)
    out = np.full((n, n), sl.min(), dtype=np.float32)
    y0, x0 = (n - h) // 2, (n - w) // 2
    out[y0:y0 + h, x0:x0 + w] = sl
    t = torch.from_numpy(out)[None, None]
    t = F.interpolate(t, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
    return t[0, 0].numpy()


def scale_slice(sl: np.ndarray) -> np.ndarray | None:
    lo, hi = np.percentile(sl, [0.5, 99.5])
    if hi - lo <= 1e-6:
        return None
    return np.clip((sl - lo) / (hi - lo) * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)


def load_slices(root: str, min_fraction: float = 0.15) -> tuple[np.ndarray, list[tuple[str, int]]]:
    import nibabel as nib

    slices, counts = [], []
    for path in sources(root):
        img = nib.as_closest_canonical(nib.load(path))  # RAS+
        data = np.asarray(img.dataobj, dtype=np.float32)
        if data.ndim == 3:
            data = data[..., None]
        thr = 0.15 * np.percentile(data, 99.0)
        kept = 0
        for v in range(data.shape[3]):
            for z in range(data.shape[2]):
                sl = data[:, :, z, v]  # [x (R), y (A)]
                if (sl > thr).mean() < min_fraction:  # near-empty slice
                    continue
                sl = sl.T[::-1, ::-1]  # rows: anterior -> posterior, cols: patient right -> left
                s = scale_slice(to_square_64(np.ascontiguousarray(sl)))
                if s is not None:
                    slices.append(s)
                    kept += 1
        counts.append((os.path.relpath(path, root), kept))
    return np.stack(slices), counts


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.mul_(decay).add_(pm, alpha=1.0 - decay)


@torch.no_grad()
def ddim_sample(model, sched_cfg, n: int, steps: int, seed: int, batch: int = 32) -> torch.Tensor:
    sched = mx.ddim_scheduler(sched_cfg)
    sched.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, batch):
        b = min(batch, n - i)
        x = torch.randn((b, 1, SIZE, SIZE), generator=g)
        for t in sched.timesteps:
            eps = model(x, timesteps=torch.full((b,), int(t), dtype=torch.long))
            x, _ = sched.step(eps, t, x)
        out.append(x)
    return torch.cat(out)


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.flatten().double() - a.double().mean()
    b = b.flatten().double() - b.double().mean()
    return float((a @ b) / (a.norm() * b.norm()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=default_data_root())
    ap.add_argument("--out", default=os.path.join(REPO, "pipelines", "models", "brain-ddpm-64"))
    ap.add_argument("--ckpt", default="/tmp/brain-ddpm-64.ckpt.pt", help="training checkpoint (not committed)")
    ap.add_argument("--resume", action="store_true", help="continue from --ckpt")
    ap.add_argument("--minutes", type=float, default=12.0, help="wall-clock training budget (this run)")
    ap.add_argument("--batch", type=int, default=8)
    # higher than the usual 1e-4..2.5e-4: a 2-core CPU budget allows only some hundred steps
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-samples", type=int, default=64)
    ap.add_argument("--eval-steps", type=int, default=50)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    data_np, counts = load_slices(args.data)
    data = torch.from_numpy(data_np)[:, None]  # [N,1,64,64]
    mean_slice = data[:, 0].mean(0)
    print(f"slices: {len(data)} " + ", ".join(f"{p}: {c}" for p, c in counts), flush=True)

    from monai.networks.nets import DiffusionModelUNet

    # use_flash_attention=True only selects PyTorch's fused SDPA kernel for training speed (same maths, same
    # parameters); the exported config keeps MONAI's default False.
    model = DiffusionModelUNet(**UNET_KWARGS, use_flash_attention=True)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    sched = mx.ddpm_scheduler(mx.normalize_scheduler_kwargs(SCHEDULER_KWARGS))
    gen = torch.Generator().manual_seed(args.seed + 1)
    step, seconds, losses = 0, 0.0, []
    if args.resume:
        ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        for group in opt.param_groups:
            group["lr"] = args.lr
        gen.set_state(ck["gen"])
        step, seconds, losses = ck["step"], ck["seconds"], ck["losses"]
        print(f"resumed at step {step} ({seconds / 60:.1f} min trained)", flush=True)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"parameters: {nparams}", flush=True)

    def save_ckpt():
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "gen": gen.get_state(), "step": step, "seconds": seconds, "losses": losses}, args.ckpt)

    model.train()
    t0 = time.time()
    last_save = t0
    budget = args.minutes * 60.0
    while time.time() - t0 < budget:
        idx = torch.randint(0, len(data), (args.batch,), generator=gen)
        x0 = data[idx].clone()
        flip = torch.rand(args.batch, generator=gen) < 0.5
        x0[flip] = x0[flip].flip(-1)  # left-right flip
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, sched.num_train_timesteps, (args.batch,), generator=gen)
        xt = sched.add_noise(x0, noise, t)
        loss = F.mse_loss(model(xt, timesteps=t), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema_update(ema, model, min(args.ema, (1 + step) / (10 + step)))
        losses.append(loss.item())
        if step % 50 == 0:
            el = time.time() - t0
            print(f"step {step} loss(avg50) {np.mean(losses[-50:]):.4f} {el / 60:.1f} min", flush=True)
        if time.time() - last_save > 120:
            save_ckpt()
            last_save = time.time()
    seconds += time.time() - t0
    if args.minutes > 0:
        save_ckpt()
    final_loss = float(np.mean(losses[-200:])) if losses else float("nan")
    print(f"trained {step} steps, {seconds / 60:.1f} min total, final loss (mean of last 200) {final_loss:.4f}",
          flush=True)

    # export the EMA weights
    ema.eval()
    cfg = mx.write_model_dir(args.out, ema.state_dict(), UNET_KWARGS, image_size=(SIZE, SIZE),
                             intensity_range=(-1.0, 1.0), scheduler=SCHEDULER_KWARGS)
    from safetensors.torch import save_file

    save_file({"mean": mean_slice.contiguous()}, os.path.join(args.out, "mean_slice.safetensors"),
              metadata={"format": "pt", "producer": "mindscan train_brain64.py"})
    os.chmod(os.path.join(args.out, "mean_slice.safetensors"), 0o644)

    # quality check: DDIM 50 samples vs the mean training slice
    t1 = time.time()
    samples = ddim_sample(ema, cfg["scheduler"], args.eval_samples, args.eval_steps, seed=1234)
    corr = pearson(samples[:, 0].mean(0), mean_slice)
    noise_corr = pearson(torch.randn((args.eval_samples, SIZE, SIZE), generator=torch.Generator().manual_seed(7))
                         .mean(0), mean_slice)
    print(f"quality: pearson(mean of {args.eval_samples} DDIM-{args.eval_steps} samples, mean_slice) = {corr:.3f} "
          f"(pure noise: {noise_corr:.3f}); sample range [{float(samples.min()):.2f}, {float(samples.max()):.2f}] "
          f"({time.time() - t1:.0f} s)", flush=True)
    save_file({"samples": samples.contiguous()}, "/tmp/brain-ddpm-64.samples.safetensors")

    import monai

    info = {"slices": len(data), "sources": counts, "steps": step, "minutes": round(seconds / 60, 1),
            "batch": args.batch, "lr": args.lr, "ema": args.ema, "seed": args.seed,
            "final_loss": round(final_loss, 4), "pearson_mean": round(corr, 3), "pearson_noise": round(noise_corr, 3),
            "torch": torch.__version__, "monai": monai.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "threads": args.threads, "parameters": nparams}
    with open(os.path.join("/tmp", "brain-ddpm-64.train.json"), "w") as f:
        json.dump(info, f, indent=2)
    print(json.dumps(info), flush=True)
    if corr <= 0.5:
        print("QUALITY CHECK FAILED (<= 0.5): train longer with --resume", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
