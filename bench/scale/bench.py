#!/usr/bin/env python3
"""Work-queue overhead and 2 shards as 2 processes, against one process (see run.sh)."""

import argparse
import hashlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nats(store):
    port = free_port()
    p = subprocess.Popen(
        ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return p, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nats-server did not start")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def outputs(folder):
    got = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                got[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return got


def run(mindscan, pipeline):
    r = subprocess.run(
        [mindscan, "run", "--no-progress", pipeline], capture_output=True, text=True
    )
    if r.returncode != 0:
        raise SystemExit(f"{pipeline} exited {r.returncode}:\n{r.stderr}")


def batch_pipeline(work, data, fmt, out):
    return write(
        os.path.join(work, "batch.yaml"),
        f"pipeline: batch\nstages:\n  - id: read\n    use: {fmt}.read\n    params:\n"
        f"      paths: ['{data}']\n  - id: out\n    use: nifti.write\n    inputs: [read]\n"
        f"    params: {{out: '{out}', format: nii.gz}}\n",
    )


def run_together(commands, what):
    """Starts every command at once and waits for all; any non-zero exit ends the benchmark."""
    procs = [
        subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{what} exited {proc.returncode}:\n{err}")


def timed_batch(mindscan, work, data, fmt):
    out = os.path.join(work, "batch")
    shutil.rmtree(out, ignore_errors=True)
    p = batch_pipeline(work, data, fmt, out)
    t0 = time.perf_counter()
    run(mindscan, p)
    return time.perf_counter() - t0, outputs(out)


def timed_shards(mindscan, work, data, fmt, count):
    """The batch pipeline as `count` concurrent processes, `--shard i/count`, one folder."""
    out = os.path.join(work, f"shards{count}")
    shutil.rmtree(out, ignore_errors=True)
    p = batch_pipeline(work, data, fmt, out)
    t0 = time.perf_counter()
    run_together(
        [[mindscan, "run", "--no-progress", "--shard", f"{i}/{count}", p] for i in range(count)],
        "shard",
    )
    return time.perf_counter() - t0, outputs(out)


def timed_queue(mindscan, work, data, fmt, workers):
    store = tempfile.mkdtemp(dir=work)
    server, url = start_nats(store)
    out = os.path.join(work, f"queue{workers}")
    shutil.rmtree(out, ignore_errors=True)
    try:
        pub = write(
            os.path.join(work, "publish.yaml"),
            f"pipeline: publish\nstages:\n  - id: scan\n    use: {fmt}.scan\n    params:\n"
            f"      paths: ['{data}']\n  - id: publish\n    use: queue.publish\n"
            f"    inputs: [scan]\n    params: {{nats: {{url: '{url}'}}}}\n",
        )
        wrk = write(
            os.path.join(work, "worker.yaml"),
            f"pipeline: worker\nstages:\n  - id: queue\n    use: queue.consume\n"
            f"    params: {{nats: {{url: '{url}'}}, until_empty: true}}\n"
            f"  - id: load\n    use: volume.load\n    inputs: [queue]\n"
            f"  - id: out\n    use: nifti.write\n    inputs: [load]\n"
            f"    params: {{out: '{out}', format: nii.gz}}\n",
        )
        t0 = time.perf_counter()
        run(mindscan, pub)
        run_together([[mindscan, "run", "--no-progress", wrk]] * workers, "worker")
        return time.perf_counter() - t0, outputs(out)
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(store, ignore_errors=True)


def measure(mindscan, work, data, fmt, repeats):
    """Median wall seconds per mode, checking every run wrote the batch run's bytes."""
    modes = ["batch", "shards2", 1, 2, 4]
    times = {m: [] for m in modes}
    want = None
    for _ in range(repeats):
        for m in modes:  # alternated, so drift hits every mode alike
            if m == "batch":
                t, got = timed_batch(mindscan, work, data, fmt)
                want = want or got
            elif m == "shards2":
                t, got = timed_shards(mindscan, work, data, fmt, 2)
            else:
                t, got = timed_queue(mindscan, work, data, fmt, m)
            if got != want:
                raise SystemExit(f"{m}: outputs differ from the single process's")
            times[m].append(t)
    return {m: statistics.median(v) for m, v in times.items()}, len(want)


def report(title, med, files):
    print(f"\n{title} ({files} output files)")
    print(f"{'mode':<28}{'median s':>10}{'/ batch':>10}")
    print(f"{'one process (.read)':<28}{med['batch']:>10.3f}{1.0:>10.2f}")
    r = med["shards2"] / med["batch"]
    print(f"{'2 shards, 2 processes':<28}{med['shards2']:>10.3f}{r:>10.2f}")
    for m in (1, 2, 4):
        print(f"{f'queue, {m} worker(s)':<28}{med[m]:>10.3f}{med[m] / med['batch']:>10.2f}")


def nifti_set(work, source, n):
    """n distinct files (distinct paths are distinct references) copied from one volume."""
    d = os.path.join(work, f"nifti{n}")
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        shutil.copy(source, os.path.join(d, f"vol{i:04}.nii"))
    return d


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--mindscan", required=True)
    a.add_argument("--dicom", required=True)
    a.add_argument("--nifti", required=True, help="one small volume, copied N times")
    a.add_argument("--count", type=int, default=100)
    a.add_argument("--repeats", type=int, default=5)
    args = a.parse_args()
    work = tempfile.mkdtemp(prefix="mindscan-scale-")
    try:
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {args.repeats} runs, medians")
        dicom, files = measure(args.mindscan, work, os.path.abspath(args.dicom), "dicom", args.repeats)
        report(f"DICOM series in {args.dicom}", dicom, files)
        n = args.count
        small, files = measure(args.mindscan, work, nifti_set(work, args.nifti, n), "nifti", args.repeats)
        report(f"{n} NIfTI files", small, files)
        big, files = measure(args.mindscan, work, nifti_set(work, args.nifti, 2 * n), "nifti", args.repeats)
        report(f"{2 * n} NIfTI files", big, files)
        # The fixed cost (two processes, connecting, the stream) cancels in the difference.
        print("\nper-reference cost (slope between the two NIfTI sets), ms")
        batch = (big["batch"] - small["batch"]) / n * 1000
        print(f"{'one process':<28}{batch:>10.2f}")
        for m in (1, 2, 4):
            q = (big[m] - small[m]) / n * 1000
            print(f"{f'queue, {m} worker(s)':<28}{q:>10.2f}   overhead {q - batch:+.2f} ms")
        print("\nevery run wrote the single process's bytes")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
