"""Generate expected.json: what pydicom (3.0.x, with pylibjpeg / pyjpegls
plugins) decodes from each file in this folder. Run once:

    pip install pydicom numpy pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pyjpegls
    python3 gen_expected.py

For every file: shape, stored-value statistics and a SHA-256 over the stored
values as little-endian int64 in (frame, row, column, sample) order. Lossy
JPEG files are decoded by different JPEG libraries in Rust and Python, so for
them we keep per-channel means and a strided sample of values instead of the
checksum (the Rust test uses a tolerance there).
"""
import hashlib, json, os, sys
import numpy as np
import pydicom

here = os.path.dirname(os.path.abspath(__file__))
STRIDE = 1009
LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}
out = {"generator": f"pydicom {pydicom.__version__}, numpy {np.__version__}", "files": {}}
for name in sorted(os.listdir(here)):
    if not name.endswith(".dcm"):
        continue
    ds = pydicom.dcmread(os.path.join(here, name))
    arr = ds.pixel_array  # stored values (no rescale); YBR JPEG -> RGB
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    spp = int(ds.SamplesPerPixel)
    a = arr.reshape(frames, int(ds.Rows), int(ds.Columns), spp).astype(np.int64)
    ts = str(ds.file_meta.TransferSyntaxUID)
    e = {
        "transfer_syntax": ts,
        "rows": int(ds.Rows), "columns": int(ds.Columns), "frames": frames,
        "samples_per_pixel": spp,
        "min": int(a.min()), "max": int(a.max()), "sum": int(a.sum()),
        "rescale_slope": float(getattr(ds, "RescaleSlope", 1.0)),
        "rescale_intercept": float(getattr(ds, "RescaleIntercept", 0.0)),
        "lossy": ts in LOSSY,
    }
    flat = a.reshape(-1)
    if ts in LOSSY:
        e["channel_means"] = [float(a[..., c].mean()) for c in range(spp)]
        e["stride"] = STRIDE
        e["strided_values"] = [int(v) for v in flat[::STRIDE]]
    else:
        e["sha256_int64le"] = hashlib.sha256(flat.astype("<i8").tobytes()).hexdigest()
    out["files"][name] = e
    print(name, ts, a.shape, e["min"], e["max"], e["sum"], file=sys.stderr)
with open(os.path.join(here, "expected.json"), "w") as f:
    json.dump(out, f, separators=(",", ":"))
