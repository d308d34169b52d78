#!/usr/bin/env python3
"""Baseline for the NIfTI -> JPG benchmark: plain nibabel + numpy + Pillow.

Every axial slice of every input volume -> 8-bit JPEG (quality 90), with the intensity window
set to the 0.5th..99.5th percentile of the whole volume (numpy's default linear interpolation),
slices in RAS-canonical orientation (nibabel.as_closest_canonical), anterior at the top.

    plain_script.py OUT_DIR INPUT [INPUT ...]     (an INPUT may be a folder of .nii/.nii.gz)

Single process, single thread (what a typical one-off script does).
"""
import os
import sys

import nibabel as nib
import numpy as np
from PIL import Image


def inputs(args):
    for a in args:
        if os.path.isdir(a):
            for name in sorted(os.listdir(a)):
                if name.endswith((".nii", ".nii.gz")):
                    yield os.path.join(a, name)
        else:
            yield a


def stem(path):
    name = os.path.basename(path)
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def convert(path, out_dir):
    img = nib.as_closest_canonical(nib.load(path))
    vol = np.asanyarray(img.dataobj, dtype=np.float32)
    if vol.ndim > 3:
        vol = vol[..., 0]  # first frame only (inputs here are 3D)
    lo, hi = np.percentile(vol, [0.5, 99.5])
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    u8 = np.clip((vol - lo) * scale, 0, 255).round().astype(np.uint8)
    dest = os.path.join(out_dir, stem(path))
    os.makedirs(dest, exist_ok=True)
    n = u8.shape[2]
    for k in range(n):
        # RAS array [x, y]: rows = y reversed (anterior on top), cols = x.
        sl = np.ascontiguousarray(u8[:, :, k].T[::-1])
        Image.fromarray(sl, mode="L").save(os.path.join(dest, f"axial_{k:03d}.jpg"), quality=90)
    return n


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    total = sum(convert(p, out_dir) for p in inputs(sys.argv[2:]))
    print(f"{total} slices", file=sys.stderr)


if __name__ == "__main__":
    main()
