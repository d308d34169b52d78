#!/usr/bin/env python3
"""Write tests/data/nifti/expected.json: what nibabel reads from each NIfTI file here.

The Rust tests in libraries/nifti/tests/ compare mindscan_nifti::read_nifti
against these values. Regenerate with:

    pip install nibabel numpy
    python3 tests/data/nifti/make_fixtures.py

Conventions used in the JSON:
  * "shape", "affine", ... are exactly as nibabel reports them (img.affine is the
    affine nibabel picks: sform, else qform, else the pixdim-based fallback).
  * "raw_sha256" is the SHA-256 of the UNSCALED voxel values in on-disk voxel order
    (first index fastest, i.e. Fortran order of nibabel's array), each value written
    little-endian. Example: int16 -> 2 bytes LE per voxel.
  * "fdata" stats come from img.get_fdata(dtype=float64) (scaling applied).
  * "samples" are fixed voxel indices (corners plus a deterministic spread) with the
    raw value and the scaled (get_fdata) value at each.
"""

import hashlib
import json
import pathlib

import nibabel as nib
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
FILES = [
    "anatomical.nii",
    "example4d.nii.gz",
    "example_nifti2.nii.gz",
    "functional.nii",
    "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "standard.nii.gz",
]


def sample_indices(shape, count=20):
    """Corners of the first three axes (first and last of the others) + a spread."""
    out = []
    nd = len(shape)
    for corner in range(2 ** min(nd, 3)):
        idx = []
        for ax in range(nd):
            if ax < 3:
                idx.append(0 if not (corner >> ax) & 1 else shape[ax] - 1)
            else:
                idx.append(shape[ax] - 1 if corner % 2 else 0)
        out.append(tuple(idx))
    # deterministic spread through the volume (a linear congruential sequence)
    state = 12345
    while len(out) < count:
        idx = []
        for s in shape:
            state = (state * 1103515245 + 12345) % (2**31)
            idx.append(state % s)
        out.append(tuple(idx))
    # the centre voxel as well
    out.append(tuple(s // 2 for s in shape))
    # de-duplicate while keeping order
    seen, uniq = set(), []
    for i in out:
        if i not in seen:
            seen.add(i)
            uniq.append(i)
    return uniq


def describe(path):
    img = nib.load(str(path))
    # img.header is nibabel's in-memory copy: it resets vox_offset and moves
    # scl_slope/scl_inter into img.dataobj. Read the on-disk header for those fields.
    with nib.openers.ImageOpener(str(path)) as fobj:
        hdr = type(img.header).from_fileobj(fobj)
    version = 2 if isinstance(img, nib.Nifti2Image) else 1
    disk_dtype = img.get_data_dtype()
    raw = np.asanyarray(img.dataobj.get_unscaled())
    fdata = img.get_fdata(dtype=np.float64)
    le = raw.astype(raw.dtype.newbyteorder("<"), copy=False)
    raw_bytes = le.tobytes(order="F")
    slope, inter = hdr.get_slope_inter()
    assert (slope is None and img.dataobj.slope == 1.0) or slope == img.dataobj.slope
    assert (inter is None and img.dataobj.inter == 0.0) or inter == img.dataobj.inter
    assert img.dataobj.offset == int(hdr["vox_offset"])
    samples = []
    for idx in sample_indices(raw.shape):
        samples.append(
            {
                "index": list(int(i) for i in idx),
                "raw": float(raw[idx]),
                "scaled": float(fdata[idx]),
            }
        )
    return {
        "file": path.name,
        "nifti_version": version,
        "shape": [int(s) for s in img.shape],
        "dtype": disk_dtype.name,
        "byteorder": "big" if disk_dtype.byteorder == ">" else "little",
        "datatype_code": int(hdr["datatype"]),
        "pixdim": [float(x) for x in hdr["pixdim"]],
        "vox_offset": float(hdr["vox_offset"]),
        "affine": img.affine.tolist(),
        "sform": hdr.get_sform().tolist(),
        "qform": hdr.get_qform().tolist(),
        "sform_code": int(hdr["sform_code"]),
        "qform_code": int(hdr["qform_code"]),
        "scl_slope_header": float(hdr["scl_slope"]),
        "scl_inter_header": float(hdr["scl_inter"]),
        # nibabel's interpretation: None (null) when there is no valid scaling
        "slope": None if slope is None else float(slope),
        "inter": None if inter is None else float(inter),
        "xyzt_units": int(hdr["xyzt_units"]),
        "intent_code": int(hdr["intent_code"]),
        "descrip": hdr["descrip"].tobytes().split(b"\0")[0].decode("latin-1"),
        "raw_sha256": hashlib.sha256(raw_bytes).hexdigest(),
        "raw_nbytes": len(raw_bytes),
        "fdata": {
            "sum": float(fdata.sum()),
            "sum_sq": float((fdata * fdata).sum()),
            "min": float(fdata.min()),
            "max": float(fdata.max()),
        },
        "samples": samples,
    }


def main():
    out = {
        "generator": f"make_fixtures.py with nibabel {nib.__version__}, numpy {np.__version__}",
        "files": [describe(HERE / name) for name in FILES],
    }
    (HERE / "expected.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {HERE / 'expected.json'}")


if __name__ == "__main__":
    main()
