#!/usr/bin/env bash
# Volumes per second of `augment` with 10 variants per input into NIfTI, median of RUNS runs
# (outputs on tmpfs so the disk is not measured): bash bench/augment/throughput.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-5}
cargo build --release -q
OUT=${OUT:-/dev/shm/augbench}
mkdir -p "$OUT"
sed "s#/dev/shm/augbench/out#$OUT/out#" bench/augment/throughput.yaml > "$OUT/pipeline.yaml"
times=()
for _ in $(seq "$RUNS"); do
    rm -rf "$OUT/out"
    s=$(date +%s.%N)
    target/release/mindscan -q run --no-progress "$OUT/pipeline.yaml"
    e=$(date +%s.%N)
    times+=("$(echo "$e - $s" | bc)")
done
n=$(ls "$OUT/out" | grep -c '\.nii$')
printf '%s\n' "${times[@]}" | sort -n | awk -v n="$n" '{t[NR]=$1} END {m=t[int((NR+1)/2)]; printf "%d volumes in %.3f s (median of %d): %.1f volumes/s\n", n, m, NR, n/m}'
