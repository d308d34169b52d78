#!/usr/bin/env python3
"""Check files written by mindscan's NIfTI writer with nibabel.

Usage: check_nibabel.py CASES.json
CASES.json is a list of objects written by the Rust test (libraries/nifti/tests/roundtrip.rs):
  path, shape, datatype_code, affine, qform_affine (or null), sform_code, qform_code,
  slope, inter, raw_sha256 (SHA-256 of the raw voxel values, on-disk order, little-endian).
Prints one line per file; exits 1 on any mismatch, 2 if nibabel/numpy are missing.
"""

import hashlib
import json
import sys

try:
    import nibabel as nib
    import numpy as np
except ImportError as e:  # pragma: no cover
    print(f"nibabel/numpy missing ({e}): pip install nibabel numpy")
    sys.exit(2)


def check(case):
    problems = []
    img = nib.load(case["path"])
    hdr = img.header
    if list(img.shape) != case["shape"]:
        problems.append(f"shape {img.shape} != {case['shape']}")
    if int(hdr["datatype"]) != case["datatype_code"]:
        problems.append(f"datatype {int(hdr['datatype'])} != {case['datatype_code']}")
    if not np.allclose(img.affine, np.array(case["affine"]), atol=1e-4, rtol=1e-6):
        problems.append(f"affine\n{img.affine}\n!= \n{np.array(case['affine'])}")
    if case["qform_affine"] is not None:
        q = hdr.get_qform()
        if not np.allclose(q, np.array(case["qform_affine"]), atol=1e-4, rtol=1e-5):
            problems.append(f"qform\n{q}\n!= \n{np.array(case['qform_affine'])}")
    for key in ("sform_code", "qform_code"):
        if int(hdr[key]) != case[key]:
            problems.append(f"{key} {int(hdr[key])} != {case[key]}")
    slope, inter = float(img.dataobj.slope), float(img.dataobj.inter)
    if not np.isclose(slope, case["slope"], rtol=1e-6) or not np.isclose(
        inter, case["inter"], rtol=1e-6, atol=1e-6
    ):
        problems.append(f"slope/inter {slope}/{inter} != {case['slope']}/{case['inter']}")
    raw = np.asanyarray(img.dataobj.get_unscaled())
    if raw.dtype.fields is None:
        raw = raw.astype(raw.dtype.newbyteorder("<"), copy=False)
    digest = hashlib.sha256(raw.tobytes(order="F")).hexdigest()
    if digest != case["raw_sha256"]:
        problems.append(f"raw data sha256 {digest} != {case['raw_sha256']}")
    return problems


def main():
    cases = json.load(open(sys.argv[1]))
    failed = 0
    for case in cases:
        try:
            problems = check(case)
        except Exception as e:  # report and keep going
            problems = [f"nibabel could not load it: {e!r}"]
        if problems:
            failed += 1
            print(f"MISMATCH {case['path']}:")
            for p in problems:
                print(f"  {p}")
        else:
            print(f"ok {case['path']}")
    print(f"{len(cases) - failed}/{len(cases)} files agree with nibabel {nib.__version__}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
