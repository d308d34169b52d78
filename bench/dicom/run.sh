#!/usr/bin/env bash
# DICOM -> NIfTI: dcm2niix vs `mindscan convert` on the same series, same run.
#
#   bench/dicom/run.sh [REPEATS]        (default 7; run from anywhere)
#
# Installs dcm2niix if missing (Debian package, else `pip install dcm2niix`), uses pigz for
# dcm2niix -z y when present, builds mindscan in release mode (CARGO_TARGET_DIR, default
# /work/target-bench-dicom), then times each tool REPEATS times per mode, alternating them, and
# prints the median wall times and ratios (mindscan / dcm2niix).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
repeats="${1:-7}"

if ! command -v dcm2niix >/dev/null; then
    (apt-get install -y dcm2niix pigz >/dev/null 2>&1 || sudo apt-get install -y dcm2niix pigz >/dev/null 2>&1) ||
        pip install dcm2niix >/dev/null 2>&1 || true
fi
command -v dcm2niix >/dev/null || { echo "dcm2niix not found (apt-get install dcm2niix / pip install dcm2niix)"; exit 1; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-bench-dicom}"
(cd "$root" && cargo build --release --quiet -p mindscan)
mindscan="$CARGO_TARGET_DIR/release/mindscan"

exec python3 "$here/bench.py" --mindscan "$mindscan" --data "$root/tests/data/dicom/series" --repeats "$repeats"
