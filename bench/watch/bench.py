#!/usr/bin/env python3
"""watch.folder latency and catch-up throughput (see run.sh)."""

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time

import pydicom

STABLE_AGE = 5.0
SETTLE = 1.0


def dicom_files(series_dir):
    d = os.path.join(series_dir, "DICOM")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".dcm"))


def journal_done(state):
    p = os.path.join(state, "watch", "journal.sqlite")
    if not os.path.exists(p):
        return []
    con = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(
            "SELECT stem, finished_at FROM series WHERE state = 'done' ORDER BY finished_at"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def watch_pipeline(work, incoming, out, state, once, jpg):
    p = os.path.join(work, "watch.yaml")
    y = f"""pipeline: bench-watch
state_dir: {state}
stages:
  - id: watch
    use: watch.folder
    workers: 3          # one watcher + two decoders (convert runs two readers)
    max_in_flight: 3
    params:
      paths: [{incoming}]
      settle: {SETTLE}s
      stable_age: {STABLE_AGE if not once else 2}s
      once: {"true" if once else "false"}
  - id: nifti
    use: nifti.write
    inputs: [watch]
    workers: 2
    params: {{out: {out}/nifti, format: nii.gz}}
"""
    if jpg:
        y += f"""  - id: window
    use: intensity.window
    inputs: [watch]
  - id: slice
    use: volume.slice
    inputs: [window]
    params: {{plane: all, skip_empty: true}}
  - id: jpg
    use: image.write
    inputs: [slice]
    workers: 2
    params: {{out: {out}/jpg, manifest: both, manifest_append: true, contact_sheet: true}}
"""
    with open(p, "w") as f:
        f.write(y)
    return p


def latency(a, work):
    """Copies each real series file by file into a watched folder; reports landing -> done."""
    incoming, out, state = (os.path.join(work, n) for n in ("lat-in", "lat-out", "lat-state"))
    os.makedirs(incoming)
    p = watch_pipeline(work, incoming, out, state, once=False, jpg=True)
    proc = subprocess.Popen([a.mindscan, "run", "--no-progress", p],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    rows = []
    try:
        for series in sorted(os.listdir(a.data)):
            files = dicom_files(os.path.join(a.data, series))
            dst = os.path.join(incoming, series)
            os.makedirs(dst)
            before = len(journal_done(state))
            for f in files:
                shutil.copyfile(f, os.path.join(dst, os.path.basename(f)))
            landed = time.time()
            while len(journal_done(state)) == before:
                if proc.poll() is not None:
                    raise SystemExit(proc.stderr.read())
                time.sleep(0.02)
            stem, finished = journal_done(state)[-1]
            rows.append((series, len(files), finished - landed))
    finally:
        proc.terminate()
        proc.wait(60)
    return rows


def make_batch(a, work, n):
    """n series: alternately copies of the GE fMRI (151 files) and the Siemens mosaic (2 files),
    each with new Series/SOP Instance UIDs, mtimes an hour old (an export that already landed)."""
    src = os.path.join(work, "batch")
    templates = [dicom_files(os.path.join(a.data, s)) for s in
                 ("GE_MR750_EPI_fMRI_mr_0004", "Siemens_Skyra_EPI_mosaic_mr_0003")]
    datasets = [[pydicom.dcmread(f) for f in t] for t in templates]
    old = time.time() - 3600
    files = 0
    for k in range(n):
        d = os.path.join(src, f"series{k:03d}")
        os.makedirs(d)
        for i, ds in enumerate(datasets[k % 2]):
            ds = ds.copy()
            ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.777.{k}"
            ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.777.{k}.{i}"
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            path = os.path.join(d, f"IM{i:04d}.dcm")
            ds.save_as(path)
            os.utime(path, (old, old))
            files += 1
    return src, files


def timed(cmd):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{r.stderr[-3000:]}")
    return dt


def count_nii(d):
    return sum(1 for r, _, fs in os.walk(d) for f in fs if f.endswith(".nii.gz"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mindscan", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--series", type=int, default=100)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-watch-")
    try:
        lat = latency(a, work)
        src, files = make_batch(a, work, a.series)
        t_convert, t_watch = [], []
        for rep in range(a.repeats):
            for tool in ("convert", "watch"):
                out = os.path.join(work, f"out-{tool}")
                state = os.path.join(work, f"state-{tool}")
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(state, ignore_errors=True)
                if tool == "convert":
                    cmd = [a.mindscan, "convert", src, "--out", out, "--format", "nifti",
                           "--no-progress"]
                else:
                    p = watch_pipeline(work, src, out, state, once=True, jpg=False)
                    cmd = [a.mindscan, "run", "--no-progress", p]
                dt = timed(cmd)
                n = count_nii(out)
                if n != a.series:
                    raise SystemExit(f"{tool}: {n} NIfTI files for {a.series} series")
                (t_convert if tool == "convert" else t_watch).append(dt)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"# watch.folder benchmark — {platform.node()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print(f"## Latency (stable_age {STABLE_AGE:g} s, settle {SETTLE:g} s; "
          "NIfTI + JPG all planes + manifests + contact sheets)\n")
    print("| series | files | last file landed -> outputs complete | minus stable_age | target |")
    print("|---|---:|---:|---:|---|")
    for s, n, dt in lat:
        print(f"| {s} | {n} | {dt:.2f} s | {dt - STABLE_AGE:+.2f} s | ≤ +1 s |")
    mc, mw = statistics.median(t_convert), statistics.median(t_watch)
    print(f"\n## Catch-up: {a.series} series ({files} files) already in the folder -> NIfTI\n")
    print("| tool | median wall (s) | runs | series/s |")
    print("|---|---:|---|---:|")
    print(f"| mindscan convert --format nifti | {mc:.2f} | {', '.join(f'{t:.2f}' for t in t_convert)} | {a.series / mc:.1f} |")
    print(f"| watch.folder once: true -> nifti.write | {mw:.2f} | {', '.join(f'{t:.2f}' for t in t_watch)} | {a.series / mw:.1f} |")
    print(f"\nwatch / convert: {mw / mc:.2f} (target ≤ 1.10)")


if __name__ == "__main__":
    main()
