#!/usr/bin/env bash
# Recreate the TorchIO/MONAI benchmark venv at bench/.venv-torch (gitignored).
#
#   bash bench/augment/setup.sh            # create or complete the venv
#   VENV=/tmp/v bash bench/augment/setup.sh
#
# Installs exactly the versions in requirements.lock (pip freeze --all of the
# venv the fixtures and figures were made with): torchio 1.2.1, torch 2.15.0,
# monai 1.6.1, SimpleITK 2.5.7, nibabel 5.4.2, numpy 2.4.6, scipy 1.17.1.
#
# About CUDA: PyPI's Linux x86_64 torch wheel is a CUDA build and depends on
# the nvidia-*/cuda-* wheels (about 4.5 GB).  There is no CPU-only torch for
# x86_64 on PyPI itself (the CPU wheels live on PyTorch's own index, which
# this project cannot reach), and `pip install --no-deps torch` does not work
# either: `import torch` then fails looking for libcublasLt.  So they are
# installed; nothing here uses a GPU (torch.cuda is never touched).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${VENV:-$REPO/bench/.venv-torch}
PY=${PYTHON:-python3}

"$PY" -c 'import sys; assert sys.version_info >= (3, 10), "need Python >= 3.10 (torchio 1.2)"'
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.lock"
"$VENV/bin/python" - <<'PY'
import monai, nibabel, numpy, scipy, SimpleITK, torch, torchio
print('venv ok: torchio', torchio.__version__, '| torch', torch.__version__,
      '| monai', monai.__version__, '| SimpleITK', SimpleITK.Version_VersionString(),
      '| nibabel', nibabel.__version__, '| numpy', numpy.__version__, '| scipy', scipy.__version__)
PY
