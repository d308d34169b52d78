#!/usr/bin/env bash
# Scale-out overhead: the same DICOM series converted to NIfTI by one process (dicom.read) and
# as 2 shards in 2 processes (--shard 0/2, 1/2), and through the NATS JetStream work queue
# (dicom.scan -> queue.publish, then W workers running
# queue.consume -> volume.load -> nifti.write until the queue is empty), same run, same data.
#
#   bench/scale/run.sh [REPEATS] [COUNT]   (default 5 runs; COUNT and 2×COUNT NIfTI files, default 100)
# Data: every series in ../shared/data/dicom/series, and COUNT copies (distinct paths) of
# tests/data/nifti/anatomical.nii; the slope between COUNT and 2×COUNT is the cost per reference.
#
# Needs nats-server (apt-get install nats-server). Builds mindscan in release mode
# (CARGO_TARGET_DIR, default /work/target-bench-scale). Prints median wall times, the queue's
# ratio to the single process, and checks every run wrote the single process's bytes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
repeats="${1:-5}"
count="${2:-100}"
command -v nats-server >/dev/null || { echo "nats-server not found (apt-get install nats-server)"; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-bench-scale}"
(cd "$root" && cargo build --release --quiet -p mindscan)
exec python3 "$here/bench.py" --mindscan "$CARGO_TARGET_DIR/release/mindscan" \
    --dicom "$root/../shared/data/dicom/series" --nifti "$root/tests/data/nifti/anatomical.nii" \
    --count "$count" --repeats "$repeats"
