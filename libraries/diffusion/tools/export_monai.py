#!/usr/bin/env python3
"""Export a MONAI DiffusionModelUNet checkpoint to a Mindscan model directory.

  export_monai.py CHECKPOINT --config KWARGS.json --out DIR [--image-size H W]
                  [--intensity-range LO HI] [--scheduler KWARGS.json]

CHECKPOINT  torch .pt/.pth: a state_dict, a dict with a "state_dict" / "model" entry, or a whole pickled
            model.  Keys in the old MONAI GenerativeModels naming are mapped with MONAI's own
            DiffusionModelUNet.load_old_state_dict.  A "module." prefix (DataParallel) is stripped.
KWARGS.json the DiffusionModelUNet(**kwargs) arguments, e.g.
            {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [32, 64, 64],
             "attention_levels": [false, true, true], "num_res_blocks": 1, "num_head_channels": 64}
--scheduler the training DDPMScheduler/DDIMScheduler kwargs (default: MONAI's defaults, linear_beta 1000).
--image-size the training image size (written as image_size; null when not given).

Writes DIR/model.safetensors (float32, MONAI key names) and DIR/config.json (mindscan.diffusion_unet.v1).
Options Mindscan does not run are refused with a one-line message and exit status 2: spatial_dims != 2,
with_conditioning / cross_attention_dim, upcast_attention, dropout_cattn != 0, transformer_num_layers != 1
with conditioning, unknown kwargs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mindscan_export as mx  # noqa: E402


def fail(msg: str, code: int = 2):
    print(f"export_monai.py: error: {msg}", file=sys.stderr)
    sys.exit(code)


def read_json(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        fail(f"cannot read {what} {path}: {e}")
    if not isinstance(value, dict):
        fail(f"{what} {path} must hold a JSON object")
    return value


def load_checkpoint(path: str) -> dict:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        # a whole pickled model (or other pickled objects) needs the full unpickler: trust the file
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001
            fail(f"cannot load checkpoint {path}: {type(e).__name__}: {e}")
    for _ in range(3):
        if isinstance(obj, torch.nn.Module):
            obj = obj.state_dict()
        if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
            for key in ("state_dict", "model", "model_state_dict", "unet"):
                if key in obj:
                    obj = obj[key]
                    break
            else:
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        fail(f"{path}: no state_dict found (expected a state_dict, a dict with 'state_dict'/'model', or a model)")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_into_model(model, state: dict, verbose: bool) -> str:
    """Load `state` into the MONAI model; returns 'new' or 'old' (GenerativeModels names)."""
    new_keys = set(model.state_dict())
    if set(state) == new_keys:
        model.load_state_dict(state, strict=True)
        return "new"
    old = dict(state)
    try:
        model.load_old_state_dict(old, verbose=verbose)  # pops what it maps
    except (KeyError, RuntimeError) as e:
        missing = sorted(new_keys - set(state))[:5]
        extra = sorted(set(state) - new_keys)[:5]
        fail(f"weights do not fit the model built from --config ({type(e).__name__}: {str(e).splitlines()[0]}); "
             f"e.g. missing {missing}, unexpected {extra}")
    leftover = [k for k in old if k not in new_keys]
    if leftover:
        fail(f"checkpoint has keys the model does not use: {sorted(leftover)[:8]}")
    return "old"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--config", required=True, help="DiffusionModelUNet kwargs (JSON)")
    ap.add_argument("--out", required=True, help="output model directory")
    ap.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"))
    ap.add_argument("--intensity-range", type=float, nargs=2, metavar=("LO", "HI"), default=(-1.0, 1.0))
    ap.add_argument("--scheduler", help="training scheduler kwargs (JSON)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    kwargs = read_json(args.config, "--config")
    sched = read_json(args.scheduler, "--scheduler") if args.scheduler else {}
    try:
        cfg = mx.make_config(kwargs, args.image_size, args.intensity_range, sched)  # refuses unsupported options
    except mx.Unsupported as e:
        fail(str(e))
    if not os.path.isfile(args.checkpoint):
        fail(f"checkpoint {args.checkpoint} not found")

    import torch

    state = load_checkpoint(args.checkpoint)
    model = mx.build_unet(cfg)
    naming = load_into_model(model, {k: v.to(torch.float32) for k, v in state.items()}, args.verbose)
    mx.write_model_dir(args.out, model.state_dict(), kwargs, args.image_size, args.intensity_range, sched)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}/model.safetensors ({len(model.state_dict())} tensors, {n} parameters, "
          f"{'old GenerativeModels' if naming == 'old' else 'MONAI'} key names in) and config.json")
    if args.image_size is None:
        print("note: --image-size not given: config.json has image_size null", file=sys.stderr)


if __name__ == "__main__":
    main()
