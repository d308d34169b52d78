#!/usr/bin/env python3
"""Write the MONAI parity fixtures of mindscan-diffusion to libraries/diffusion/tests/fixtures/monai/.

MONAI (1.6.1) and torch (2.15) are used as libraries; every tensor is float32 (timesteps and class
labels int64), NCHW, in safetensors files.  Everything is deterministic (fixed torch seeds; the
noise MONAI's schedulers draw with torch.randn is replaced by tensors made here and stored).

  bench/.venv-torch/bin/python libraries/diffusion/tools/make_fixtures.py            # all
  bench/.venv-torch/bin/python libraries/diffusion/tools/make_fixtures.py --only tiny steps
  bench/.venv-torch/bin/python libraries/diffusion/tools/make_fixtures.py --only brain  # needs the trained model

Parts: tiny cond qkv updown old schedules steps brain (see tests/fixtures/monai/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, HERE)
import mindscan_export as mx  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

OUT = os.path.join(REPO, "libraries", "diffusion", "tests", "fixtures", "monai")
BRAIN = os.path.join(REPO, "pipelines", "models", "brain-ddpm-64")
META = {"format": "pt", "producer": "mindscan make_fixtures.py"}
H, W = 24, 16  # non-square on purpose
_RANDN = torch.randn  # the real one (CaptureRandn replaces torch.randn while active)

# Half the widths of the brief's (16, 32, 32) / 16 heads / 8 groups, same structure: 4x smaller files, which
# keeps the fixture folder under ~3 MB (2 heads per attention block, 2 channels per norm group).
TINY = dict(spatial_dims=2, in_channels=2, out_channels=2, channels=(8, 16, 16),
            attention_levels=(False, True, True), num_res_blocks=(1, 2, 1), num_head_channels=8,
            norm_num_groups=4)
COND = {**TINY, "in_channels": 1, "out_channels": 1, "num_class_embeds": 3}
QKV = {**TINY, "use_combined_linear": True, "include_fc": False, "num_head_channels": (4, 4, 8)}
UPDOWN = dict(spatial_dims=2, in_channels=3, out_channels=1, channels=(8, 16), attention_levels=(False, True),
              num_res_blocks=(2, 1), num_head_channels=8, norm_num_groups=4, resblock_updown=True)


def save(path: str, tensors: dict[str, torch.Tensor]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, path, metadata=dict(META))
    os.chmod(path, 0o644)
    print(f"  {os.path.relpath(path, OUT)}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


@torch.no_grad()
def reinit(model: nn.Module, seed: int) -> None:
    """Random weights everywhere (MONAI zero-initialises conv2 and the out conv), activations O(1)."""
    g = torch.Generator().manual_seed(seed)
    done = set()
    for mod in model.modules():
        if isinstance(mod, nn.GroupNorm):
            mod.weight.copy_(1.0 + 0.2 * torch.randn(mod.weight.shape, generator=g))
            mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=g))
        elif isinstance(mod, (nn.Conv2d, nn.Linear)):
            fan_in = mod.weight[0].numel()
            mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) / fan_in**0.5)
            if mod.bias is not None:
                mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=g))
        elif isinstance(mod, nn.Embedding):
            mod.weight.copy_(torch.randn(mod.weight.shape, generator=g))
        else:
            continue
        done.update(id(p) for p in mod.parameters(recurse=False))
    left = [n for n, p in model.named_parameters() if id(p) not in done]
    assert not left, f"parameters not re-initialised: {left}"


def make_model(kwargs: dict, seed: int) -> nn.Module:
    model = mx.build_unet(kwargs)
    reinit(model, seed)
    return model.eval()


@torch.no_grad()
def model_case(name: str, kwargs: dict, seed: int, with_labels: bool = False) -> nn.Module:
    model = make_model(kwargs, seed)
    mx.write_model_dir(os.path.join(OUT, name), model.state_dict(), kwargs, image_size=(H, W))
    for f in ("model.safetensors", "config.json"):
        os.chmod(os.path.join(OUT, name, f), 0o644)
    print(f"  {name}/model.safetensors: {os.path.getsize(os.path.join(OUT, name, 'model.safetensors'))} bytes")
    g = torch.Generator().manual_seed(seed + 1000)
    x = torch.randn((3, kwargs["in_channels"], H, W), generator=g)
    t = torch.tensor([0, 17, 999], dtype=torch.int64)
    io = {"x": x, "t": t}
    if with_labels:
        io["class_labels"] = torch.tensor([2, 0, 1], dtype=torch.int64)
        out = model(x, timesteps=t, class_labels=io["class_labels"])
    else:
        out = model(x, timesteps=t)
    io["out"] = out
    print(f"  {name}: out std {float(out.std()):.3f}, |out| max {float(out.abs().max()):.3f}")
    # every parameter matters: shifting any one of them changes the output
    for pname, prm in model.named_parameters():
        saved = prm.clone()
        prm.add_(0.1 * torch.randn(prm.shape, generator=g))
        moved = model(x, timesteps=t, class_labels=io.get("class_labels"))
        prm.copy_(saved)
        rel = float((moved - out).abs().max() / out.abs().max())
        # (the key bias cancels in the softmax: q.(k+b) shifts every logit of a query equally)
        assert rel > 1e-4 or pname.endswith("to_k.bias"), f"{name}: parameter {pname} does not change the output ({rel:.2e})"
    reloaded, _ = mx.load_model_dir(os.path.join(OUT, name))
    out2 = reloaded(x, timesteps=t, class_labels=io.get("class_labels"))
    assert torch.equal(out, out2), "model dir does not reproduce the model"
    save(os.path.join(OUT, f"{name}.io.safetensors"), io)
    return model


def old_name(key: str) -> str:
    """New MONAI key -> old MONAI GenerativeModels key (inverse of DiffusionModelUNet.load_old_state_dict)."""
    for part in ("to_q", "to_k", "to_v"):
        key = key.replace(f".attn.{part}.", f".{part}.")
    key = key.replace(".attn.out_proj.", ".proj_attn.")
    key = key.replace(".postconv.", ".conv.")
    return key


@torch.no_grad()
def part_old(tiny: nn.Module) -> None:
    old = {old_name(k): v for k, v in tiny.state_dict().items()}
    renamed = sum(1 for k in tiny.state_dict() if old_name(k) != k)
    os.makedirs(os.path.join(OUT, "old"), exist_ok=True)
    path = os.path.join(OUT, "old", "model.safetensors")
    save_file({k: v.contiguous() for k, v in old.items()}, path, metadata=dict(META))
    os.chmod(path, 0o644)
    with open(os.path.join(OUT, "tiny", "config.json")) as f:
        cfg = f.read()
    with open(os.path.join(OUT, "old", "config.json"), "w") as f:
        f.write(cfg)
    # check: MONAI's own loader maps the old names back onto the same model
    fresh = mx.build_unet(TINY).eval()
    fresh.load_old_state_dict(load_file(path))
    io = load_file(os.path.join(OUT, "tiny.io.safetensors"))
    assert torch.equal(fresh(io["x"], timesteps=io["t"]), io["out"]), "old keys do not reproduce tiny"
    print(f"  old/model.safetensors: {renamed} keys renamed, {os.path.getsize(path)} bytes; "
          "load_old_state_dict reproduces tiny.io")


def part_schedules() -> None:
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    t: dict[str, torch.Tensor] = {}
    for name in ("linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine"):
        s = DDPMScheduler(num_train_timesteps=1000, schedule=name)
        for field in ("betas", "alphas", "alphas_cumprod"):
            v = getattr(s, field)
            assert v.dtype == torch.float32
            t[f"{name}.{field}"] = v
    for n in (10, 50, 7, 1000):
        for o in (0, 1):
            s = DDIMScheduler(num_train_timesteps=1000, steps_offset=o)
            s.set_timesteps(n)
            t[f"ddim.timesteps.{n}.offset{o}"] = s.timesteps.to(torch.int64)
    for n in (20, 1000):
        s = DDPMScheduler(num_train_timesteps=1000)
        s.set_timesteps(n)
        t[f"ddpm.timesteps.{n}"] = s.timesteps.to(torch.int64)
    save(os.path.join(OUT, "schedules.safetensors"), t)
    print(f"  ddim 7 steps: {t['ddim.timesteps.7.offset0'].tolist()}, offset1: {t['ddim.timesteps.7.offset1'].tolist()}")


class CaptureRandn:
    """Replace torch.randn (as MONAI's schedulers call it) by stored tensors; records every draw."""

    def __init__(self, make):
        self.make = make  # shape -> tensor
        self.drawn: list[torch.Tensor] = []

    @contextlib.contextmanager
    def active(self):
        orig = torch.randn

        def fake(*size, **kwargs):
            shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size)
            n = self.make(shape).to(kwargs.get("dtype") or torch.float32)
            self.drawn.append(n)
            return n

        torch.randn = fake
        try:
            yield self
        finally:
            torch.randn = orig


def part_steps() -> None:
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    g = torch.Generator().manual_seed(7)
    shape = (2, 1, 8, 8)
    sample = 1.6 * torch.randn(shape, generator=g)  # some values beyond +-1: clipping matters
    model_output = 1.6 * torch.randn(shape, generator=g)
    tensors = {"sample": sample, "model_output": model_output}
    cases = []

    def run(prefix, sched, timestep, eta, params):
        noise = torch.randn(shape, generator=g)
        cap = CaptureRandn(lambda s: noise.clone())
        with cap.active():
            ts = torch.tensor(timestep, dtype=torch.int64)  # as iterating scheduler.timesteps gives
            if params["sampler"] == "ddim":
                prev, x0 = sched.step(model_output, ts, sample, eta)
            else:
                prev, x0 = sched.step(model_output, ts, sample)
        assert len(cap.drawn) <= 1
        tensors[f"{prefix}.prev_sample"] = prev
        tensors[f"{prefix}.pred_original_sample"] = x0
        if cap.drawn:
            tensors[f"{prefix}.noise"] = noise
        cases.append({**params, "timestep": timestep, "prefix": prefix, "noise": bool(cap.drawn)})

    for variance in ("fixed_small", "fixed_large"):
        for pred in ("epsilon", "sample", "v_prediction"):
            for clip in (True, False):
                s = DDPMScheduler(num_train_timesteps=1000, variance_type=variance, prediction_type=pred,
                                  clip_sample=clip)
                for t in (999, 500, 1, 0):
                    p = f"ddpm.{variance}.{pred}.{'clip' if clip else 'noclip'}.t{t}"
                    run(p, s, t, None, {"sampler": "ddpm", "variance_type": variance, "prediction_type": pred,
                                        "clip": clip, "eta": None, "num_inference_steps": None,
                                        "set_alpha_to_one": None, "steps_offset": None})
    ddim_sets = [(eta, pred, clip, True, 0, (999, 111, 99, 0)) for eta in (0.0, 0.7)
                 for pred in ("epsilon", "sample", "v_prediction") for clip in (True, False)]
    ddim_sets += [(eta, "epsilon", True, False, 1, (999, 111, 1)) for eta in (0.0, 0.7)]
    for eta, pred, clip, alpha_one, offset, ts in ddim_sets:
        s = DDIMScheduler(num_train_timesteps=1000, prediction_type=pred, clip_sample=clip,
                          set_alpha_to_one=alpha_one, steps_offset=offset)
        s.set_timesteps(10)
        for t in ts:
            p = f"ddim.eta{eta}.{pred}.{'clip' if clip else 'noclip'}.{'a1' if alpha_one else 'a0'}.o{offset}.t{t}"
            run(p, s, t, eta, {"sampler": "ddim", "variance_type": None, "prediction_type": pred, "clip": clip,
                               "eta": eta, "num_inference_steps": 10, "set_alpha_to_one": alpha_one,
                               "steps_offset": offset})

    noise_cases = []
    x0 = 1.6 * torch.randn((4, 1, 8, 8), generator=g)
    noise = torch.randn((4, 1, 8, 8), generator=g)
    timesteps = torch.tensor([0, 1, 500, 999], dtype=torch.int64)
    tensors.update({"add_noise.x0": x0, "add_noise.noise": noise, "add_noise.timesteps": timesteps})
    for name in ("linear_beta", "cosine"):
        s = DDPMScheduler(num_train_timesteps=1000, schedule=name)
        tensors[f"add_noise.{name}.noisy"] = s.add_noise(x0, noise, timesteps)
        tensors[f"get_velocity.{name}.velocity"] = s.get_velocity(x0, noise, timesteps)
        noise_cases.append({"schedule": name, "x0": "add_noise.x0", "noise": "add_noise.noise",
                            "timesteps": "add_noise.timesteps", "noisy": f"add_noise.{name}.noisy",
                            "velocity": f"get_velocity.{name}.velocity"})
    save(os.path.join(OUT, "steps.safetensors"), tensors)
    doc = {
        "about": "single MONAI scheduler steps on `sample`/`model_output`; outputs under <prefix>.prev_sample and "
                 "<prefix>.pred_original_sample, the randn MONAI drew under <prefix>.noise (only when noise is "
                 "true). Schedule: linear_beta defaults, num_train_timesteps 1000. DDPM cases use the scheduler "
                 "as constructed (its step ignores set_timesteps); DDIM cases call set_timesteps(10) first. "
                 "timestep is passed as a 0-d int64 tensor, as iterating scheduler.timesteps gives.",
        "schedule": {"num_train_timesteps": 1000, "schedule": "linear_beta", "beta_start": 1e-4, "beta_end": 2e-2},
        "sample": "sample", "model_output": "model_output", "cases": cases, "add_noise": noise_cases,
        **versions(),
    }
    with open(os.path.join(OUT, "steps.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"  steps.json: {len(cases)} step cases, {len(noise_cases)} add_noise/get_velocity cases")


@torch.no_grad()
def part_brain() -> None:
    if not os.path.isfile(os.path.join(BRAIN, "model.safetensors")):
        print(f"  brain: {BRAIN} missing (run train_brain64.py first); skipped")
        return
    model, cfg = mx.load_model_dir(BRAIN)
    hh, ww = cfg["image_size"]
    g = torch.Generator().manual_seed(64)
    x = torch.randn((2, 1, hh, ww), generator=g)
    t = torch.tensor([999, 250], dtype=torch.int64)
    save(os.path.join(OUT, "brain.io.safetensors"), {"x": x, "t": t, "out": model(x, timesteps=t)})

    # DDIM, 10 steps, eta 0 (the loop as in MONAI's tutorials)
    sched = mx.ddim_scheduler(cfg["scheduler"])
    sched.set_timesteps(10)
    noise = torch.randn((2, 1, hh, ww), generator=g)
    xs, samples = noise.clone(), []
    for step_t in sched.timesteps:
        out = model(xs, timesteps=torch.full((2,), step_t))
        xs, _ = sched.step(out, step_t, xs, 0.0)
        samples.append(xs)
    save(os.path.join(OUT, "brain.ddim10.safetensors"),
         {"noise": noise, "timesteps": sched.timesteps.to(torch.int64), "samples": torch.stack(samples)})

    # DDPM, set_timesteps(20), batch 1; capture the randn each step draws
    sched = mx.ddpm_scheduler(cfg["scheduler"])
    sched.set_timesteps(20)
    noise = torch.randn((1, 1, hh, ww), generator=g)
    xs, samples, step_noise = noise.clone(), [], []
    gn = torch.Generator().manual_seed(65)
    for step_t in sched.timesteps:
        cap = CaptureRandn(lambda s: _RANDN(s, generator=gn))
        out = model(xs, timesteps=torch.full((1,), step_t))
        with cap.active():
            xs, _ = sched.step(out, step_t, xs)
        assert len(cap.drawn) == (1 if int(step_t) > 0 else 0)
        step_noise.append(cap.drawn[0] if cap.drawn else torch.zeros_like(xs))
        samples.append(xs)
    save(os.path.join(OUT, "brain.ddpm20.safetensors"),
         {"noise": noise, "timesteps": sched.timesteps.to(torch.int64), "step_noise": torch.stack(step_noise),
          "samples": torch.stack(samples)})
    print(f"  brain ddpm20 timesteps {sched.timesteps.tolist()[:3]}...; final sample range "
          f"[{float(xs.min()):.2f}, {float(xs.max()):.2f}]")


def versions() -> dict:
    import monai
    import safetensors

    return {"torch": torch.__version__, "monai": monai.__version__, "safetensors": safetensors.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parts = ["tiny", "cond", "qkv", "updown", "old", "schedules", "steps", "brain"]
    ap.add_argument("--only", nargs="+", choices=parts, default=parts)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    print(f"writing {OUT} ({versions()})")
    tiny = None
    if "tiny" in args.only:
        tiny = model_case("tiny", TINY, seed=1)
    if "cond" in args.only:
        model_case("cond", COND, seed=2, with_labels=True)
    if "qkv" in args.only:
        model_case("qkv", QKV, seed=3)
    if "updown" in args.only:
        model_case("updown", UPDOWN, seed=4)
    if "old" in args.only:
        if tiny is None:
            tiny, _ = mx.load_model_dir(os.path.join(OUT, "tiny"))
        part_old(tiny)
    if "schedules" in args.only:
        part_schedules()
    if "steps" in args.only:
        part_steps()
    if "brain" in args.only:
        part_brain()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"fixtures total: {total} bytes")


if __name__ == "__main__":
    main()
