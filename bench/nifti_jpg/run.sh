#!/usr/bin/env bash
# NIfTI -> JPG benchmark: Mindscan vs med2image vs plain nibabel+numpy+Pillow, end to end.
#
#   bench/nifti_jpg/run.sh            (from anywhere; REPS=5 BATCH=50 BATCH_REPS=1 RSS_COPIES=200)
#
# Builds mindscan (release, with libjpeg-turbo: needs cmake and nasm) unless MINDSCAN names a
# binary, creates the two venvs if missing
# (bench/.venv-med2image: med2image + nibabel<5; bench/.venv-plain: nibabel, numpy, Pillow),
# then runs bench/nifti_jpg/run.py, which prints Markdown tables on stdout.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -z "${MINDSCAN:-}" ]; then
  echo "building mindscan (release, --features turbojpeg) into $CARGO_TARGET_DIR ..." >&2
  cargo build --release -p mindscan --features turbojpeg >&2
  export MINDSCAN="$CARGO_TARGET_DIR/release/mindscan"
fi

PY="${PYTHON:-python3}"
M2I_VENV="$ROOT/bench/.venv-med2image"
PLAIN_VENV="$ROOT/bench/.venv-plain"
if [ ! -x "$M2I_VENV/bin/med2image" ]; then
  echo "creating $M2I_VENV ..." >&2
  "$PY" -m venv "$M2I_VENV"
  "$M2I_VENV/bin/pip" install -q "nibabel<5" "numpy<2" scipy med2image pillow >&2
fi
if ! "$PLAIN_VENV/bin/python" -c 'import nibabel, numpy, PIL' 2>/dev/null; then
  echo "creating $PLAIN_VENV ..." >&2
  "$PY" -m venv "$PLAIN_VENV"
  "$PLAIN_VENV/bin/pip" install -q nibabel numpy pillow >&2
fi
export MED2IMAGE="$M2I_VENV/bin/med2image"
export PLAIN_PY="$PLAIN_VENV/bin/python"
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

echo "## NIfTI -> JPG benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
echo "- load average before the run: $(cut -d" " -f1-3 /proc/loadavg) (other processes on the machine skew the figures)"
echo "- $("$MINDSCAN" --version), med2image $("$M2I_VENV/bin/pip" show med2image 2>/dev/null | awk '/^Version/ {print $2}') (nibabel $("$M2I_VENV/bin/python" -c 'import nibabel; print(nibabel.__version__)')), plain: nibabel $("$PLAIN_PY" -c 'import nibabel; print(nibabel.__version__)'), numpy $("$PLAIN_PY" -c 'import numpy; print(numpy.__version__)'), Pillow $("$PLAIN_PY" -c 'import PIL; print(PIL.__version__)')"
echo
exec "$PLAIN_PY" "$HERE/run.py"
