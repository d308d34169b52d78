#!/usr/bin/env python3
"""NIfTI -> JPG benchmark: Mindscan vs med2image vs a plain nibabel+numpy+Pillow script.

Run through bench/nifti_jpg/run.sh (it builds mindscan and creates the venvs). Every tool
converts ALL axial slices of each volume to JPG. Single volume = whole process (start-up
included), REPS repetitions after one untimed warm-up, median. Batch = BATCH copies
(symlinks) of the volume in a temp folder, one timed run, throughput.

Environment: MINDSCAN (binary), MED2IMAGE (its executable), PLAIN_PY (python with nibabel,
numpy, Pillow), REPS (5), BATCH (50), BATCH_REPS (1), RSS_COPIES (200), RSS_REPS (3), KEEP_TMP (unset),
TOOLS (mindscan,med2image,plain).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MINDSCAN = os.environ["MINDSCAN"]
MED2IMAGE = os.environ["MED2IMAGE"]
PLAIN_PY = os.environ["PLAIN_PY"]
REPS = int(os.environ.get("REPS", "5"))
BATCH = int(os.environ.get("BATCH", "50"))
BATCH_REPS = int(os.environ.get("BATCH_REPS", "1"))
RSS_COPIES = int(os.environ.get("RSS_COPIES", "200"))
# Each peak RSS is the median of RSS_REPS runs: a single volume's peak moves by up to 2 MiB
# with thread timing (how many slices are queued while the volume is alive).
RSS_REPS = max(1, int(os.environ.get("RSS_REPS", "3")))
PIPELINE = os.path.join(HERE, "pipeline.yaml")
PLAIN = os.path.join(HERE, "plain_script.py")

DATASETS = [
    ("MNI152 2009a", "tests/data/nifti/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"),
    ("T1 Siemens XA30", "tests/data/nifti/t1w_siemens_xa30.nii.gz"),
]


def sh(cmd, **kw):
    r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return r


def yaml_list(paths):
    return "[" + ",".join(json.dumps(p) for p in paths) + "]"


# One command per tool. `inputs` is a list of files or one folder; `out` a fresh folder.
def mindscan_cmd(inputs, out, metrics=None):
    cmd = [MINDSCAN, "-q", "run", PIPELINE, "--no-progress",
           "--set", f"read.paths={yaml_list(inputs)}", "--set", f"write.out={json.dumps(out)}"]
    if metrics:
        cmd += ["--metrics-json", metrics]
    return [cmd]


def plain_cmd(inputs, out):
    return [[PLAIN_PY, PLAIN, out] + inputs]


def med2image_cmds(inputs, out):
    # med2image converts one volume per process: a batch is one process per file.
    files = []
    for p in inputs:
        if os.path.isdir(p):
            files += [os.path.join(p, n) for n in sorted(os.listdir(p)) if n.endswith((".nii", ".nii.gz"))]
        else:
            files.append(p)
    cmds = []
    for i, f in enumerate(files):
        d = os.path.join(out, f"v{i:03d}")
        cmds.append([MED2IMAGE, "-i", f, "-d", d, "-o", "slice.jpg", "-s", "-1", "-t", "jpg"])
    return cmds


TOOLS = [("mindscan", mindscan_cmd), ("med2image", med2image_cmds), ("plain", plain_cmd)]
# TOOLS=mindscan,plain runs a subset (med2image's batches take minutes).
if os.environ.get("TOOLS"):
    TOOLS = [t for t in TOOLS if t[0] in os.environ["TOOLS"].split(",")]


def timed(cmds):
    t0 = time.perf_counter()
    for c in cmds:
        sh(c)
    return time.perf_counter() - t0


def jpgs(out):
    found = []
    for d, _, names in os.walk(out):
        found += [os.path.join(d, n) for n in names if n.lower().endswith((".jpg", ".jpeg"))]
    return sorted(found)


def dims_of(files):
    from PIL import Image  # only for the check; run.py runs under the plain venv's python
    sizes = {}
    for f in files:
        with Image.open(f) as im:
            key = f"{im.size[0]}x{im.size[1]} {im.mode}"
        sizes[key] = sizes.get(key, 0) + 1
    return sizes


def peak_rss_kib(cmd):
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, cwd=ROOT, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {cmd}\n{r.stderr[-3000:]}")
    for line in r.stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.split(":")[1])
    sys.exit("no RSS in /usr/bin/time output")


def main():
    tmp = tempfile.mkdtemp(prefix="mindscan-bench-")
    results = {}  # (dataset, mode, tool) -> dict
    notes = []
    try:
        for label, rel in DATASETS:
            src = os.path.join(ROOT, rel)
            # Batch folder: BATCH symlinks with distinct names.
            bdir = os.path.join(tmp, f"batch-{len(results)}")
            os.makedirs(bdir)
            base = os.path.basename(rel).replace(".nii.gz", "")
            for i in range(BATCH):
                os.symlink(src, os.path.join(bdir, f"{base}_{i:03d}.nii.gz"))
            per_volume = {}
            for tool, make in TOOLS:
                # Single volume: warm-up, then REPS timed runs, each into a fresh folder.
                times = []
                for rep in range(REPS + 1):
                    out = os.path.join(tmp, f"out-{tool}")
                    shutil.rmtree(out, ignore_errors=True)
                    os.makedirs(out)
                    t = timed(make([src], out))
                    if rep > 0:
                        times.append(t)
                files = jpgs(out)
                per_volume[tool] = len(files)
                results[(label, "single", tool)] = {
                    "times": times, "median": statistics.median(times), "slices": len(files),
                    "dims": dims_of(files)}
                shutil.rmtree(out)
                # Batch.
                btimes = []
                for rep in range(BATCH_REPS):
                    out = os.path.join(tmp, f"out-{tool}-batch")
                    shutil.rmtree(out, ignore_errors=True)
                    os.makedirs(out)
                    btimes.append(timed(make([bdir], out)))
                files = jpgs(out)
                sample = files[:: max(1, len(files) // 200)]
                results[(label, "batch", tool)] = {
                    "times": btimes, "median": statistics.median(btimes), "slices": len(files),
                    "dims": dims_of(sample)}
                shutil.rmtree(out)
                print(f"  {label:16s} {tool:9s} single {results[(label, 'single', tool)]['median']:.3f} s"
                      f"  batch {results[(label, 'batch', tool)]['median']:.2f} s", file=sys.stderr, flush=True)
            if len(set(per_volume.values())) != 1:
                notes.append(f"{label}: JPG counts differ per volume: {per_volume}")
            # Mindscan per-stage busy times (one extra run each).
            for mode, inputs in (("single", [src]), ("batch", [bdir])):
                out = os.path.join(tmp, "out-metrics")
                shutil.rmtree(out, ignore_errors=True)
                m = os.path.join(tmp, "metrics.json")
                sh(mindscan_cmd(inputs, out, m)[0])
                with open(m) as f:
                    results[(label, mode, "metrics")] = json.load(f)
                shutil.rmtree(out)

        # Start-up: load + plan, no data (`validate`).
        st = []
        for _ in range(REPS + 1):
            t0 = time.perf_counter()
            sh([MINDSCAN, "-q", "validate", PIPELINE])
            st.append(time.perf_counter() - t0)
        startup = statistics.median(st[1:])

        # Peak RSS: 1 volume vs RSS_COPIES copies of the MNI template.
        src = os.path.join(ROOT, DATASETS[0][1])
        rdir = os.path.join(tmp, "rss")
        os.makedirs(rdir)
        for i in range(RSS_COPIES):
            os.symlink(src, os.path.join(rdir, f"mni_{i:03d}.nii.gz"))
        out = os.path.join(tmp, "out-rss")
        rss = {}  # max_in_flight of the reader ("default" = workers) -> ([1 vol], [N vols], s, JPGs)
        for mif in ("default", "2"):
            extra = [] if mif == "default" else ["--set", f"read.max_in_flight={mif}"]
            r1, rn = [], []
            for _ in range(RSS_REPS):
                r1.append(peak_rss_kib(mindscan_cmd([src], out)[0] + extra))
                shutil.rmtree(out)
                t0 = time.perf_counter()
                rn.append(peak_rss_kib(mindscan_cmd([rdir], out)[0] + extra))
                tn, nn = time.perf_counter() - t0, len(jpgs(out))
                shutil.rmtree(out)
            rss[mif] = (r1, rn, tn, nn)
    finally:
        if not os.environ.get("KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)

    # ---------------------------------------------------------------- report (Markdown)
    print()
    print("| volume | mode | tool | JPGs | JPG dims | time (median) | slices/s | Mindscan speed-up |")
    print("|---|---|---|---:|---|---:|---:|---:|")
    for label, _ in DATASETS:
        for mode in ("single", "batch"):
            ms = results[(label, mode, "mindscan")]
            for tool, _ in TOOLS:
                r = results[(label, mode, tool)]
                sps = r["slices"] / r["median"]
                sp = "—" if tool == "mindscan" else f"**{r['median'] / ms['median']:.1f}×**"
                dims = ", ".join(f"{k}" for k in sorted(r["dims"]))
                what = "1 volume" if mode == "single" else f"{BATCH} volumes"
                n = len(r["times"])
                print(f"| {label} | {what} | {tool} | {r['slices']} | {dims} | {r['median']:.3f} s"
                      f"{' (n=%d)' % n} | {sps:,.0f} | {sp} |")
    print()
    print(f"Mindscan start-up (`mindscan validate`, median): {startup * 1000:.0f} ms")
    def mib(runs):
        return (f"{statistics.median(runs) / 1024:.1f} MiB"
                f" (runs: {', '.join(f'{r / 1024:.1f}' for r in runs)})")
    for mif, (r1, rn, tn, nn) in rss.items():
        what = "reader max_in_flight default (1)" if mif == "default" else f"reader max_in_flight {mif}"
        rss1, rssn = statistics.median(r1), statistics.median(rn)
        print(f"Mindscan peak RSS (median of {RSS_REPS}), {what}: 1 MNI volume {mib(r1)};"
              f" {RSS_COPIES} copies {mib(rn)}: **{(rssn / rss1 - 1) * 100:+.1f}%**"
              f" ({nn} JPGs in {tn:.1f} s incl. /usr/bin/time)")
    print()
    print("Mindscan per-stage busy seconds (--metrics-json; a stage's busy time includes time blocked"
          " sending downstream):")
    print()
    print("| volume | mode | wall s | " + " | ".join(
        s["id"] + " (w)" for s in results[(DATASETS[0][0], "single", "metrics")]["stages"]) + " |")
    print("|---|---|---:|" + "---:|" * len(results[(DATASETS[0][0], "single", "metrics")]["stages"]))
    for label, _ in DATASETS:
        for mode in ("single", "batch"):
            m = results[(label, mode, "metrics")]
            cells = [f"{s['busy_seconds']:.3f} ({s['workers']})" for s in m["stages"]]
            print(f"| {label} | {mode} | {m['wall_seconds']:.3f} | " + " | ".join(cells) + " |")
    for n in notes:
        print(f"\nNOTE: {n}")
    with open(os.path.join(os.environ.get("RESULTS_DIR", tempfile.gettempdir()), "nifti_jpg_results.json"), "w") as f:
        json.dump({"|".join(k): v for k, v in results.items()}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
