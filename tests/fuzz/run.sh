#!/usr/bin/env bash
# Fuzz every target for SECONDS each (default 1200: 20 minutes), starting from the real files in
# tests/data and pipelines/, keeping the inputs the fuzzer adds in tests/fuzz/corpus/<target>
# (minimised with `cargo fuzz cmin` at the end) and crashes in tests/fuzz/artifacts/<target>.
# Inputs are at most 64 KiB (headers and the first frames; keeps the kept corpus small).
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The corpus is
# replayed on stable by `cargo test -p mindscan-fuzz-targets` (CI); a crash found here goes in
# the corpus once fixed, as a regression case. Prints executions per target for docs/hardening.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds="${1:-1200}"
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(nifti_read dicom_file pipeline_yaml)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-fuzz}"

# The real files each target starts from (the same list the stable replay uses): passed to
# libFuzzer as extra corpus folders, so they are read, not copied into corpus/.
seeds() {
    case $1 in
        nifti_read) echo "$root/tests/data/nifti" ;;
        dicom_file) echo "$root/tests/data/dicom/single/pydicom $root/tests/data/dicom/single/dcm_qa_ts" ;;
        pipeline_yaml) echo "$root/pipelines" ;;
    esac
}

cd "$here"
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    # -rss_limit_mb: an input that makes a reader allocate what it claims is a finding.
    cargo +nightly fuzz run "$t" "corpus/$t" $(seeds "$t") -- -max_total_time="$seconds" -rss_limit_mb=1024 \
        -max_len=65536 -timeout=20 -print_final_stats=1 2> "/tmp/fuzz-$t.log" || true
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|^==|panicked|SUMMARY" "/tmp/fuzz-$t.log" | sed "s/^/$t: /" || true
    # cmin keeps only inputs that add coverage: the regression inputs (fixed crashes) are kept
    # aside so that it cannot drop them.
    keep="$(mktemp -d)"
    find "corpus/$t" -maxdepth 1 -name 'regression-*' -exec mv -t "$keep" {} +
    cargo +nightly fuzz cmin "$t" "corpus/$t" >/dev/null 2>&1 || true
    mv "$keep"/* "corpus/$t/" 2>/dev/null || true
    rmdir "$keep"
    echo "$t: corpus $(ls "corpus/$t" | wc -l) files, $(du -sh "corpus/$t" | cut -f1); artifacts: $(ls "artifacts/$t" | wc -l)"
done
