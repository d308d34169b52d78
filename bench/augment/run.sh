#!/usr/bin/env bash
# Augment benchmark: TorchIO + MONAI (Python) and Mindscan (Rust) on the MNI volume.
#
#   bash bench/augment/run.sh                 # all transforms, 5 timed runs each
#   RUNS=9 bash bench/augment/run.sh
#   bash bench/augment/run.sh --only affine elastic     # passed to torchio_bench.py
#
# 1. creates bench/.venv-torch with setup.sh if it is missing or incomplete;
# 2. runs torchio_bench.py (2 threads), which also dumps the volume as
#    $OUT/dump/mni.f32 + mni.json;
# 3. if target/release/examples/augment_bench exists, runs it on that dump
#    (it prints the same JSON lines with "tool": "mindscan");
# 4. prints the table transform | TorchIO s | MONAI s | Mindscan s | ratio.
# Results go to $OUT (default bench/results/augment, gitignored).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${VENV:-$REPO/bench/.venv-torch}
OUT=${OUT:-$REPO/bench/results/augment}
RUNS=${RUNS:-5}
THREADS=${THREADS:-2}
BIN=${AUGMENT_BENCH:-$REPO/target/release/examples/augment_bench}

if ! "$VENV/bin/python" -c 'import torchio, monai, SimpleITK' >/dev/null 2>&1; then
    echo "== setting up $VENV" >&2
    VENV=$VENV bash "$HERE/setup.sh"
fi

mkdir -p "$OUT"
DUMP=$OUT/dump
JSONL=$OUT/results.jsonl
: > "$JSONL"

echo "== TorchIO / MONAI (runs=$RUNS, threads=$THREADS)" >&2
"$VENV/bin/python" "$HERE/torchio_bench.py" --dump "$DUMP" --out "$JSONL" \
    --runs "$RUNS" --threads "$THREADS" "$@" >/dev/null

if [ -x "$BIN" ]; then
    echo "== Mindscan ($BIN)" >&2
    # keep only the JSON lines; anything else the binary prints goes to stderr
    "$BIN" --input "$DUMP/mni.f32" --meta "$DUMP/mni.json" --json \
        | while IFS= read -r line; do
            case "$line" in
                '{'*) printf '%s\n' "$line" >>"$JSONL" ;;
                *) printf '%s\n' "$line" >&2 ;;
            esac
        done
else
    echo "== Mindscan: $BIN not found (build it with cargo build --release --example augment_bench); column left empty" >&2
fi

echo "== results: $JSONL" >&2
"$VENV/bin/python" "$HERE/report.py" "$JSONL"
