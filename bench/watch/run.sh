#!/usr/bin/env bash
# Continuous ingestion benchmark (watch.folder):
#  1. latency: last file of a series landing -> every output written (journal's finished_at),
#     for each real series in tests/data, with the full scanner-watch pipeline;
#  2. catch-up throughput: a folder of 100 series (copies of the real GE fMRI and Siemens
#     mosaic series with new UIDs) through `watch.folder` (once: true) vs the batch
#     `mindscan convert --format nifti` on the same folder, same run.
#
#   bench/watch/run.sh [REPEATS]        (default 3; run from anywhere)
#
# Needs python3 with pydicom (installed with pip if missing). Work files go to $TMPDIR
# (use TMPDIR=/dev/shm to keep disk speed out of it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python3 -c "import pydicom" 2>/dev/null || pip install -q pydicom
(cd "$root" && cargo build --release --quiet -p mindscan)
mindscan="${CARGO_TARGET_DIR:-$root/target}/release/mindscan"
exec python3 "$here/bench.py" --mindscan "$mindscan" --data "$root/tests/data/dicom/series" --repeats "${1:-3}"
