"""The one writer (and reader) of Mindscan diffusion model directories.

A model directory holds
  model.safetensors  the MONAI ``DiffusionModelUNet.state_dict()``, float32, MONAI key names,
                     metadata {"format": "pt", "producer": "mindscan export_monai.py"}
  config.json        format "mindscan.diffusion_unet.v1": the UNet kwargs (lists expanded to one
                     entry per level), image_size, intensity_range and the training scheduler.

Used by export_monai.py, make_fixtures.py, train_brain64.py and bench/diffusion/torch_bench.py.
MONAI is used as a library only (monai.networks.nets.DiffusionModelUNet, monai.networks.schedulers).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FORMAT = "mindscan.diffusion_unet.v1"
PRODUCER = "mindscan export_monai.py"
SAFETENSORS_METADATA = {"format": "pt", "producer": PRODUCER}

# MONAI DiffusionModelUNet.__init__ defaults (MONAI 1.6.1) for everything Mindscan records.
UNET_DEFAULTS: dict[str, Any] = {
    "num_res_blocks": (2, 2, 2, 2),
    "channels": (32, 64, 64, 64),
    "attention_levels": (False, False, True, True),
    "norm_num_groups": 32,
    "norm_eps": 1e-6,
    "resblock_updown": False,
    "num_head_channels": 8,
    "with_conditioning": False,
    "transformer_num_layers": 1,
    "cross_attention_dim": None,
    "num_class_embeds": None,
    "upcast_attention": False,
    "dropout_cattn": 0.0,
    "include_fc": True,
    "use_combined_linear": False,
    "use_flash_attention": False,
}
REQUIRED = ("spatial_dims", "in_channels", "out_channels")
KNOWN_KWARGS = set(REQUIRED) | set(UNET_DEFAULTS)

# Scheduler kwargs as MONAI's DDPMScheduler / DDIMScheduler take them (defaults of MONAI 1.6.1).
SCHEDULER_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "schedule": "linear_beta",
    "prediction_type": "epsilon",
    "clip_sample": True,
    "clip_sample_min": -1.0,
    "clip_sample_max": 1.0,
    "variance_type": "fixed_small",  # DDPM only
    "set_alpha_to_one": True,  # DDIM only
    "steps_offset": 0,  # DDIM only
}
SCHEDULE_ARGS = {
    "linear_beta": {"beta_start": 1e-4, "beta_end": 2e-2},
    "scaled_linear_beta": {"beta_start": 1e-4, "beta_end": 2e-2},
    "sigmoid_beta": {"beta_start": 1e-4, "beta_end": 2e-2, "sig_range": 6.0},
    "cosine": {"s": 8e-3},
}
DDPM_ONLY = {"variance_type"}
DDIM_ONLY = {"set_alpha_to_one", "steps_offset"}


class Unsupported(ValueError):
    """A MONAI option Mindscan cannot run (the message is one line)."""


def _as_list(value: Any, n: int, name: str) -> list:
    if isinstance(value, (int, float, bool)) and not isinstance(value, Sequence):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise Unsupported(f"{name} has {len(value)} entries but there are {n} levels")
    return value


def check_unet_kwargs(kwargs: Mapping[str, Any]) -> None:
    """Raise Unsupported (one-line message) for any option Mindscan does not run."""
    unknown = sorted(set(kwargs) - KNOWN_KWARGS)
    if unknown:
        raise Unsupported(f"unknown DiffusionModelUNet kwarg(s): {', '.join(unknown)}")
    missing = [k for k in REQUIRED if k not in kwargs]
    if missing:
        raise Unsupported(f"missing required DiffusionModelUNet kwarg(s): {', '.join(missing)}")
    k = {**UNET_DEFAULTS, **kwargs}
    if k["spatial_dims"] != 2:
        raise Unsupported(f"spatial_dims={k['spatial_dims']} is not supported (Mindscan runs 2-D UNets only)")
    if k["with_conditioning"] or k["cross_attention_dim"] is not None:
        raise Unsupported("with_conditioning / cross_attention_dim (cross-attention) is not supported")
    if k["upcast_attention"]:
        raise Unsupported("upcast_attention=True is not supported")
    if float(k["dropout_cattn"]) != 0.0:
        raise Unsupported(f"dropout_cattn={k['dropout_cattn']} is not supported (must be 0)")
    if k["transformer_num_layers"] != 1 and k["with_conditioning"]:
        raise Unsupported("transformer_num_layers != 1 with conditioning is not supported")


def normalize_unet_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Checked kwargs with MONAI's defaults filled in and per-level lists expanded."""
    check_unet_kwargs(kwargs)
    k = {**UNET_DEFAULTS, **kwargs}
    channels = [int(c) for c in k["channels"]]
    n = len(channels)
    return {
        "spatial_dims": 2,
        "in_channels": int(k["in_channels"]),
        "out_channels": int(k["out_channels"]),
        "channels": channels,
        "attention_levels": [bool(a) for a in _as_list(k["attention_levels"], n, "attention_levels")],
        "num_res_blocks": [int(r) for r in _as_list(k["num_res_blocks"], n, "num_res_blocks")],
        "num_head_channels": [int(h) for h in _as_list(k["num_head_channels"], n, "num_head_channels")],
        "norm_num_groups": int(k["norm_num_groups"]),
        "norm_eps": float(k["norm_eps"]),
        "resblock_updown": bool(k["resblock_updown"]),
        "num_class_embeds": None if k["num_class_embeds"] is None else int(k["num_class_embeds"]),
        "include_fc": bool(k["include_fc"]),
        "use_combined_linear": bool(k["use_combined_linear"]),
        "use_flash_attention": bool(k["use_flash_attention"]),
        "upcast_attention": False,
        "with_conditioning": False,
    }


def unet_kwargs_from_config(config: Mapping[str, Any], use_flash_attention: bool | None = None) -> dict[str, Any]:
    """The kwargs for DiffusionModelUNet(**kwargs) from a config.json (or normalized kwargs)."""
    keys = ["spatial_dims", "in_channels", "out_channels", "channels", "attention_levels", "num_res_blocks",
            "num_head_channels", "norm_num_groups", "norm_eps", "resblock_updown", "num_class_embeds",
            "include_fc", "use_combined_linear", "use_flash_attention", "upcast_attention", "with_conditioning"]
    kw = {k: config[k] for k in keys}
    for k in ("channels", "attention_levels", "num_res_blocks", "num_head_channels"):
        kw[k] = tuple(kw[k])
    if use_flash_attention is not None:
        kw["use_flash_attention"] = use_flash_attention
    return kw


def build_unet(kwargs: Mapping[str, Any]):
    """DiffusionModelUNet from MONAI kwargs or from a config.json dict."""
    from monai.networks.nets import DiffusionModelUNet

    if kwargs.get("format") == FORMAT:
        return DiffusionModelUNet(**unet_kwargs_from_config(kwargs))
    return DiffusionModelUNet(**unet_kwargs_from_config(normalize_unet_kwargs(kwargs)))


def normalize_scheduler_kwargs(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Training-scheduler kwargs with MONAI's defaults filled in (schedule args included)."""
    kwargs = dict(kwargs or {})
    schedule = kwargs.get("schedule", SCHEDULER_DEFAULTS["schedule"])
    if schedule not in SCHEDULE_ARGS:
        raise Unsupported(f"unknown noise schedule {schedule!r} (known: {', '.join(SCHEDULE_ARGS)})")
    allowed = set(SCHEDULER_DEFAULTS) | set(SCHEDULE_ARGS[schedule])
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise Unsupported(f"unknown scheduler kwarg(s) for schedule {schedule!r}: {', '.join(unknown)}")
    if kwargs.get("variance_type", "fixed_small") not in ("fixed_small", "fixed_large"):
        raise Unsupported(f"variance_type={kwargs['variance_type']!r} is not supported (fixed_small, fixed_large)")
    if kwargs.get("prediction_type", "epsilon") not in ("epsilon", "sample", "v_prediction"):
        raise Unsupported(f"prediction_type={kwargs['prediction_type']!r} is not supported")
    out: dict[str, Any] = {"num_train_timesteps": int(kwargs.get("num_train_timesteps", 1000)), "schedule": schedule}
    for name, default in SCHEDULE_ARGS[schedule].items():
        out[name] = float(kwargs.get(name, default))
    for name in ("prediction_type", "clip_sample", "clip_sample_min", "clip_sample_max", "variance_type",
                 "set_alpha_to_one", "steps_offset"):
        value = kwargs.get(name, SCHEDULER_DEFAULTS[name])
        if name in ("clip_sample_min", "clip_sample_max"):
            value = float(value)
        elif name in ("clip_sample", "set_alpha_to_one"):
            value = bool(value)
        elif name == "steps_offset":
            value = int(value)
        out[name] = value
    return out


def ddpm_scheduler(sched: Mapping[str, Any]):
    from monai.networks.schedulers import DDPMScheduler

    return DDPMScheduler(**{k: v for k, v in sched.items() if k not in DDIM_ONLY})


def ddim_scheduler(sched: Mapping[str, Any]):
    from monai.networks.schedulers import DDIMScheduler

    return DDIMScheduler(**{k: v for k, v in sched.items() if k not in DDPM_ONLY})


def make_config(unet_kwargs: Mapping[str, Any], image_size: Sequence[int] | None,
                intensity_range: Sequence[float] = (-1.0, 1.0),
                scheduler: Mapping[str, Any] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"format": FORMAT, "model": "DiffusionModelUNet"}
    cfg.update(normalize_unet_kwargs(unet_kwargs))
    cfg["image_size"] = None if image_size is None else [int(s) for s in image_size]
    cfg["intensity_range"] = [float(v) for v in intensity_range]
    cfg["scheduler"] = normalize_scheduler_kwargs(scheduler)
    return cfg


def _float32_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in state.items()}


def write_model_dir(out_dir: str, state_dict: Mapping[str, torch.Tensor], unet_kwargs: Mapping[str, Any],
                    image_size: Sequence[int] | None, intensity_range: Sequence[float] = (-1.0, 1.0),
                    scheduler: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write model.safetensors + config.json; checks the weights load strictly into the MONAI model first."""
    cfg = make_config(unet_kwargs, image_size, intensity_range, scheduler)
    state = _float32_state_dict(state_dict)
    model = build_unet(cfg)
    model.load_state_dict(state, strict=True)  # refuses missing/unexpected keys and wrong shapes
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "model.safetensors")
    save_file(state, path, metadata=dict(SAFETENSORS_METADATA))
    os.chmod(path, 0o644)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        f.write(config_json(cfg))
    return cfg


def config_json(cfg: Mapping[str, Any]) -> str:
    """Indented JSON with each list of numbers/bools on one line."""
    text = json.dumps(cfg, indent=2)
    return re.sub(r"\[\s*([^\[\]{}]*?)\s*\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text) + "\n"


def read_config(model_dir: str) -> dict[str, Any]:
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{model_dir}/config.json: format is {cfg.get('format')!r}, expected {FORMAT!r}")
    return cfg


def load_model_dir(model_dir: str, use_flash_attention: bool | None = None):
    """(MONAI DiffusionModelUNet in eval mode, config dict) from a Mindscan model directory."""
    from monai.networks.nets import DiffusionModelUNet

    cfg = read_config(model_dir)
    model = DiffusionModelUNet(**unet_kwargs_from_config(cfg, use_flash_attention))
    model.load_state_dict(load_file(os.path.join(model_dir, "model.safetensors")), strict=True)
    return model.eval(), cfg
