#!/usr/bin/env python3
"""TorchIO / MONAI side of the augment benchmark.

Times each TorchIO Random* transform with TorchIO's default parameters (and a
few MONAI counterparts) on one 3D volume, and prints one JSON line per
measurement:

    {"tool": "torchio", "transform": "affine", "seconds": 0.24, ...}

`seconds` is the median wall time of `--runs` calls (after `--warmup` calls)
for one volume.  Transform names follow the Rust augment stage
(`flip`, `affine`, `elastic`, `bias_field`, ...).

`--dump DIR` also writes the volume as `DIR/mni.f32` (little-endian float32,
i fastest) and `DIR/mni.json` (shape, RAS affine) for the Rust benchmark.

Run with bench/.venv-torch/bin/python (bench/augment/setup.sh makes it).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchio as tio

REPO = Path(__file__).resolve().parents[2]
DEFAULT_INPUT = REPO / 'tests' / 'data' / 'nifti' / 'mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz'

# name -> (TorchIO class, constructor kwargs).  Empty kwargs = TorchIO defaults.
TORCHIO_CASES = {
    'affine': ('RandomAffine', {}),
    'elastic': ('RandomElasticDeformation', {}),
    'bias_field': ('RandomBiasField', {}),
    'motion': ('RandomMotion', {}),
    'ghosting': ('RandomGhosting', {}),
    'spike': ('RandomSpike', {}),
    'blur': ('RandomBlur', {}),
    'noise': ('RandomNoise', {}),
    'gamma': ('RandomGamma', {}),
    'flip': ('RandomFlip', {}),
    # default RandomFlip flips axis 0 with p=0.5 (often a no-op); this one always flips
    'flip_always': ('RandomFlip', {'flip_probability': 1.0}),
    'anisotropy': ('RandomAnisotropy', {}),
    'swap': ('RandomSwap', {}),
}
COMPOSE5 = ['RandomAffine', 'RandomBiasField', 'RandomNoise', 'RandomGamma', 'RandomFlip']


def load_volume(path: Path) -> tio.ScalarImage:
    native = tio.ScalarImage(path)
    return tio.ScalarImage(tensor=native.data.float(), affine=native.affine.copy())


def dump(image: tio.ScalarImage, out_dir: Path, source: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    arr = image.data[0].numpy()
    (out_dir / 'mni.f32').write_bytes(np.asarray(arr, dtype='<f4').tobytes(order='F'))
    meta = {
        'source': str(source.relative_to(REPO)) if source.is_relative_to(REPO) else str(source),
        'file': 'mni.f32',
        'dtype': 'float32 little-endian',
        'layout': 'NIfTI order, i fastest',
        'shape': list(arr.shape),
        'affine_ras': np.asarray(image.affine, dtype=float).tolist(),
        'spacing': list(image.spacing),
        'orientation': ''.join(image.orientation),
    }
    (out_dir / 'mni.json').write_text(json.dumps(meta, indent=1) + '\n')


def time_calls(fn, runs: int, warmup: int, retries: int = 20):
    """Median seconds of `runs` successful calls; failed calls are retried and counted."""
    failures: list[str] = []
    for _ in range(warmup):
        for _ in range(retries):
            try:
                fn()
                break
            except RuntimeError as err:
                failures.append(str(err).split('\n')[0][:120])
    times = []
    while len(times) < runs:
        start = time.perf_counter()
        try:
            fn()
        except RuntimeError as err:
            failures.append(str(err).split('\n')[0][:120])
            if len(failures) > retries:
                raise
            continue
        times.append(time.perf_counter() - start)
    return times, failures


def emit(record: dict, out) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if out is not None:
        out.write(line + '\n')
        out.flush()


def record(tool, name, times, failures, extra) -> dict:
    rec = {
        'tool': tool,
        'transform': name,
        'seconds': statistics.median(times),
        'min_seconds': min(times),
        'runs': len(times),
    }
    rec.update(extra)
    if failures:
        rec['failed_calls'] = len(failures)
        rec['failure'] = failures[0]
    return rec


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', type=Path, default=DEFAULT_INPUT)
    parser.add_argument('--out', type=Path, help='also append the JSON lines to this file')
    parser.add_argument('--dump', type=Path, help='write mni.f32 + mni.json here')
    parser.add_argument('--dump-only', action='store_true', help='write --dump and exit')
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--only', nargs='*', help='names to run (e.g. affine elastic monai_affine copy)')
    parser.add_argument('--no-monai', action='store_true')
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    warnings.filterwarnings('ignore')
    image = load_volume(args.input)
    if args.dump:
        dump(image, args.dump, args.input)
        if args.dump_only:
            return 0
    subject = tio.Subject(t1=image)
    arr = image.data[0].numpy()
    out = open(args.out, 'a') if args.out else None
    env = {
        'threads': args.threads,
        'shape': list(arr.shape),
        'torchio': tio.__version__,
        'torch': torch.__version__,
        'python': platform.python_version(),
    }

    def wanted(name: str) -> bool:
        return not args.only or name in args.only

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    if wanted('copy'):
        times, failures = time_calls(arr.copy, args.runs, args.warmup)
        emit(record('numpy', 'copy', times, failures, {'class': 'numpy.ndarray.copy', **env}), out)

    for name, (cls_name, kwargs) in TORCHIO_CASES.items():
        if not wanted(name):
            continue
        transform = getattr(tio, cls_name)(**kwargs)
        torch.manual_seed(args.seed)
        times, failures = time_calls(lambda: transform(subject), args.runs, args.warmup)
        emit(record('torchio', name, times, failures,
                    {'class': cls_name, 'kwargs': kwargs or 'defaults', **env}), out)

    if wanted('compose5'):
        transform = tio.Compose([getattr(tio, c)() for c in COMPOSE5])
        torch.manual_seed(args.seed)
        times, failures = time_calls(lambda: transform(subject), args.runs, args.warmup)
        emit(record('torchio', 'compose5', times, failures,
                    {'class': 'Compose', 'kwargs': {'transforms': COMPOSE5}, **env}), out)

    if not args.no_monai and (wanted('monai_affine') or wanted('monai_elastic')
                              or wanted('affine') or wanted('elastic')):
        import monai
        from monai.transforms import Rand3DElastic, RandAffine

        tensor = image.data.clone()  # (1, X, Y, Z) float32, channel first
        monai_env = dict(env, monai=monai.__version__)
        del monai_env['torchio']
        deg10 = math.radians(10)
        cases = {
            # comparable to RandomAffine(scales=0.1, degrees=10): scale 1+U(-0.1,0.1), rot U(-10,10) deg
            'affine': ('RandAffine', RandAffine, {
                'prob': 1.0, 'rotate_range': (deg10, deg10, deg10), 'scale_range': (0.1, 0.1, 0.1),
                'mode': 'bilinear', 'padding_mode': 'zeros'}),
            # MONAI tutorial elastic settings (sigma 5-8 voxels, magnitude 100-200), elastic only
            'elastic': ('Rand3DElastic', Rand3DElastic, {
                'prob': 1.0, 'sigma_range': (5, 8), 'magnitude_range': (100, 200),
                'mode': 'bilinear', 'padding_mode': 'border'}),
        }
        for name, (cls_name, cls, kwargs) in cases.items():
            if args.only and name not in args.only and f'monai_{name}' not in args.only:
                continue
            transform = cls(**kwargs)
            transform.set_random_state(seed=args.seed)
            times, failures = time_calls(lambda: transform(tensor), args.runs, args.warmup)
            shown = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
            emit(record('monai', name, times, failures, {'class': cls_name, 'kwargs': shown, **monai_env}), out)

    if out is not None:
        out.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
