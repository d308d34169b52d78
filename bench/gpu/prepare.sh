#!/usr/bin/env bash
# Builds every test binary with CUDA tests, and the augment benchmark, into target/gpu-check/
# (carry that folder to the GPU machine and run bench/gpu/check.sh there).
#   bash bench/gpu/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=target/gpu-check
rm -rf "$OUT" && mkdir -p "$OUT"
list() { cargo test --release "$@" --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])'; }
for exe in $(list -p mindscan-cuda) $(list -p mindscan-augment --test cuda_parity); do
    cp "$exe" "$OUT/"
done
cargo build --release -p mindscan-augment --example augment_bench
cp target/release/examples/augment_bench "$OUT/"
# NVRTC for the GPU machine (it has the driver but no package registry), if it fits.
NVRTC=$(python3 -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "lib"))' 2>/dev/null || true)
if [ -n "$NVRTC" ] && [ -d "$NVRTC" ]; then
    mkdir -p "$OUT/nvrtc" && cp "$NVRTC"/libnvrtc* "$OUT/nvrtc/"
fi
du -sh "$OUT"
