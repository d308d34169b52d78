#!/usr/bin/env bash
# Diffusion benchmark: DDIM sampling with the brain DDPM, MONAI/PyTorch (default and best CPU settings)
# against Mindscan (libraries/diffusion, example ddim_bench).
#
#   bash bench/diffusion/run.sh                      # model pipelines/models/brain-ddpm-64, sizes 64 and 128
#   bash bench/diffusion/run.sh path/to/model_dir
#   SIZES=64 RUNS=5 bash bench/diffusion/run.sh
#
# For each size: torch_bench.py --mode monai, torch_bench.py --mode best, then
#   cargo run --release -q -p mindscan-diffusion --example ddim_bench -- --model DIR --size S --batch 8 \
#       --steps 50 --threads 2 --runs 3 --json
# and prints images/s with the ratios Mindscan/MONAI-default and Mindscan/PyTorch-best.
# JSON lines go to $OUT/results.jsonl (default bench/results/diffusion, gitignored).
# Every side gets the same thread count (THREADS, default 2) and times a full DDIM run from fixed noise
# (median of RUNS after one warm-up); nothing else should be running on the machine meanwhile.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${VENV:-$REPO/bench/.venv-torch}
OUT=${OUT:-$REPO/bench/results/diffusion}
MODEL=${1:-$REPO/pipelines/models/brain-ddpm-64}
SIZES=${SIZES:-64 128}
BATCH=${BATCH:-8}
STEPS=${STEPS:-50}
THREADS=${THREADS:-2}
RUNS=${RUNS:-3}

if ! "$VENV/bin/python" -c 'import monai, torch' >/dev/null 2>&1; then
    echo "== setting up $VENV (bench/augment/setup.sh)" >&2
    VENV=$VENV bash "$REPO/bench/augment/setup.sh"
fi
if ! "$VENV/bin/python" -c 'import safetensors' >/dev/null 2>&1; then
    echo "== installing safetensors into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check safetensors==0.8.0
fi
[ -f "$MODEL/config.json" ] || { echo "no model at $MODEL (run libraries/diffusion/tools/train_brain64.py)" >&2; exit 1; }

mkdir -p "$OUT"
JSONL=$OUT/results.jsonl
: > "$JSONL"
keep_json() {  # JSON lines to $JSONL, anything else to stderr
    while IFS= read -r line; do
        case "$line" in
            '{'*) printf '%s\n' "$line" >>"$JSONL" ;;
            *) printf '%s\n' "$line" >&2 ;;
        esac
    done
}

for S in $SIZES; do
    for MODE in monai best; do
        echo "== PyTorch $MODE, ${S}x${S}, batch $BATCH, DDIM-$STEPS, $THREADS threads" >&2
        "$VENV/bin/python" "$HERE/torch_bench.py" --model "$MODEL" --size "$S" --batch "$BATCH" \
            --steps "$STEPS" --threads "$THREADS" --mode "$MODE" --runs "$RUNS" --json | keep_json
    done
    echo "== Mindscan, ${S}x${S}" >&2
    (cd "$REPO" && cargo run --release -q -p mindscan-diffusion --example ddim_bench -- \
        --model "$MODEL" --size "$S" --batch "$BATCH" --steps "$STEPS" --threads "$THREADS" \
        --runs "$RUNS" --json) | keep_json \
        || echo "== Mindscan ddim_bench failed for size $S (column left empty)" >&2
done

echo "== results: $JSONL" >&2
"$VENV/bin/python" - "$JSONL" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def get(size, impl, mode=None):
    for r in rows:
        if r.get("size") == size and r.get("impl") == impl and (mode is None or r.get("mode") == mode):
            return r
def ips(r):
    return None if r is None else r.get("images_per_s", r["batch"] / r["seconds"])
fmt = lambda v, f="{:.2f}": "-" if v is None else f.format(v)
print("| size | batch | DDIM steps | MONAI default img/s | PyTorch best img/s | Mindscan img/s "
      "| Mindscan/MONAI | Mindscan/best |")
print("|---|---|---|---|---|---|---|---|")
for size in sorted({r["size"] for r in rows}):
    m, b, s = get(size, "pytorch", "monai"), get(size, "pytorch", "best"), get(size, "mindscan")
    any_r = m or b or s
    ratio = lambda a, c: None if a is None or c is None else ips(a) / ips(c)
    print(f"| {size}x{size} | {any_r['batch']} | {any_r['steps']} | {fmt(ips(m))} | {fmt(ips(b))} | {fmt(ips(s))} "
          f"| {fmt(ratio(s, m), '{:.2f}x')} | {fmt(ratio(s, b), '{:.2f}x')} |")
PY
