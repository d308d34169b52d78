#!/usr/bin/env python3
"""Times dcm2niix and mindscan on the same DICOM series (see run.sh)."""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time


def timed(cmd, env=None):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr.decode(errors='replace')}")
    return dt


def out_size(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if ".nii" in f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mindscan", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="bench-dicom-")
    src = os.path.join(work, "in")
    # Only the DICOM folders (the reference NIfTIs stay out), copied so both tools read the
    # same local files.
    files = 0
    for series in sorted(os.listdir(a.data)):
        d = os.path.join(a.data, series, "DICOM")
        if os.path.isdir(d):
            shutil.copytree(d, os.path.join(src, series))
            files += len(os.listdir(d))
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(src) for f in fs)

    def pipeline(fmt, out):
        p = os.path.join(work, f"p-{fmt}.yaml")
        with open(p, "w") as f:
            f.write(
                "pipeline: bench\nstages:\n"
                f"  - id: read\n    use: dicom.read\n    workers: {os.cpu_count()}\n    params:\n      paths: [\"{src}\"]\n"
                f"  - id: write\n    use: nifti.write\n    inputs: [read]\n    workers: {os.cpu_count()}\n"
                f"    params:\n      out: \"{out}\"\n      format: {fmt}\n"
            )
        return p

    def outdir(tag):
        d = os.path.join(work, "out", tag)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    d2n = shutil.which("dcm2niix")
    env = dict(os.environ, MINDSCAN_LOG="warn")
    ms = a.mindscan
    modes = [
        ("uncompressed", ["-z", "n"], lambda o: [ms, "-q", "run", "--no-progress", pipeline("nii", o)]),
        ("gzip (-z i)", ["-z", "i"], lambda o: [ms, "-q", "convert", src, "--out", o, "--format", "nifti", "--no-progress"]),
    ]
    if shutil.which("pigz"):
        modes.append(
            ("gzip (-z y, pigz)", ["-z", "y"], lambda o: [ms, "-q", "convert", src, "--out", o, "--format", "nifti", "--no-progress"])
        )
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"dcm2niix: {subprocess.run([d2n, '-v'], capture_output=True, text=True).stdout.strip().splitlines()[0]}")
    series_dirs = sorted(os.listdir(src))
    print(f"input: {files} files, {size / 1e6:.1f} MB, {len(series_dirs)} series ({a.data})")
    print(f"repeats: {a.repeats} (median; tools alternated)\n")
    print(f"{'mode':<20} {'dcm2niix s':>11} {'mindscan s':>11} {'ratio':>7} {'d2n MB':>8} {'ms MB':>7}")
    rows = []
    for name, z, mcmd in modes:
        td, tm = [], []
        # One warm-up each (file cache), then alternate.
        for i in range(a.repeats + 1):
            o1 = outdir("d2n")
            t1 = timed([d2n, *z, "-b", "y", "-f", "%p_%s", "-o", o1, src])
            o2 = outdir("ms")
            t2 = timed(mcmd(o2), env)
            if i > 0:
                td.append(t1)
                tm.append(t2)
        md, mm = statistics.median(td), statistics.median(tm)
        rows.append((name, md, mm))
        print(f"{name:<20} {md:>11.3f} {mm:>11.3f} {mm / md:>7.2f} {out_size(o1) / 1e6:>8.1f} {out_size(o2) / 1e6:>7.1f}")

    # One process per series, as a user converting series by series (or a script looping
    # over an archive) runs it: median per series, and the sum of the medians.
    print(f"\none process per series (median wall of {a.repeats}, whole process)")
    print(f"{'series':<48} {'mode':<6} {'dcm2niix s':>11} {'mindscan s':>11} {'ratio':>7}")
    for z, fmt, label in ((["-z", "n"], "nii", "nii"), (["-z", "i"], "nii.gz", "gz")):
        sum_d = sum_m = 0.0
        for series in series_dirs:
            sdir = os.path.join(src, series)
            td, tm = [], []
            for i in range(a.repeats + 1):
                o1 = outdir("d2n")
                t1 = timed([d2n, *z, "-b", "y", "-f", "%p_%s", "-o", o1, sdir])
                o2 = outdir("ms")
                compress = "y" if fmt == "nii.gz" else "n"
                t2 = timed([ms, "-q", "convert", sdir, "--out", o2, "--format", "nifti", "-z", compress, "--no-progress"], env)
                if i > 0:
                    td.append(t1)
                    tm.append(t2)
            md, mm = statistics.median(td), statistics.median(tm)
            sum_d += md
            sum_m += mm
            print(f"{series:<48} {label:<6} {md:>11.3f} {mm:>11.3f} {mm / md:>7.2f}")
        print(f"{'sum of the series':<48} {label:<6} {sum_d:>11.3f} {sum_m:>11.3f} {sum_m / sum_d:>7.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
