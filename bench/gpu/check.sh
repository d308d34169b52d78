#!/usr/bin/env bash
# Every CUDA test and the GPU benchmark, from the binaries bench/gpu/prepare.sh left in
# target/gpu-check/ (a GPU machine needs no toolchain or registry):
#   bash bench/gpu/check.sh [DIR]
# GPU tests fail here instead of printing "skipped: no CUDA" (MINDSCAN_REQUIRE_CUDA=1).
set -uo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:-target/gpu-check}
export MINDSCAN_REQUIRE_CUDA=1 MINDSCAN_REQUIRE_NVRTC=1
if [ -d "$DIR/nvrtc" ]; then
    export LD_LIBRARY_PATH="$(cd "$DIR/nvrtc" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true
status=0
for t in "$DIR"/*-*; do
    [ -x "$t" ] || continue
    echo "== $(basename "$t")"
    "$t" --test-threads=1 || status=1
done
if [ -x "$DIR/augment_bench" ]; then
    echo "== augment_bench (cpu, then cuda)"
    "$DIR/augment_bench" --synthetic 197x233x189 \
        --device cpu || status=1
    "$DIR/augment_bench" --synthetic 197x233x189 \
        --device cuda || status=1
fi
exit $status
