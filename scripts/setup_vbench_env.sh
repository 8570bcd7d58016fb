#!/usr/bin/env bash
# Build VBench's own environment (default ./.venv-vbench, beside .venv) for `fvbench score --vbench-python`.
# VBench 0.1.5 pins transformers==4.33.2 and numpy<2, so it cannot share .venv with fvbench's stack.
#   - torch: the CPU wheel torch==2.13.0, installed FIRST, unless a torch is already in the environment
#     (GPU users: create the venv and install your CUDA torch into it before running this script).
#   - torchvision: the release built for that torch (0.28.0 for 2.13.0), without dependencies so it never
#     replaces the torch. PyPI's torchvision is built against CUDA torch: beside the CPU torch its compiled ops do not
#     load and `import torchvision` fails ("operator torchvision::nms does not exist"). Then the script installs
#     scripts/vbench_env/fvbench_torchvision_cpu.py (with a .pth) into the environment: it declares the two operator
#     schemas torchvision needs at import, so transforms and models import; VBench's dimensions use no such operator.
#   - vbench==0.1.5 with its declared pins, plus setuptools<81: its bundled CLIP imports pkg_resources, which
#     setuptools 81 dropped (torch 2.13 needs setuptools>=77.0.3, so the pin "<70" the issue found cannot hold).
# Idempotent: a second run only checks. pip's cache (PIP_CACHE_DIR) makes a rebuild quick.
# VBench's weights are not installed here: they go in $VBENCH_CACHE_DIR (default ~/.cache/vbench), see README.
# Prints the --vbench-python path last. Usage: bash scripts/setup_vbench_env.sh [ENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_DIR=${1:-${VBENCH_ENV:-.venv-vbench}}
PYTHON=${PYTHON:-python3}
[ -x "$ENV_DIR/bin/python" ] || "$PYTHON" -m venv "$ENV_DIR"
PY="$ENV_DIR/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)
if ! "$PY" -c "import torch" 2>/dev/null; then
  "${PIP[@]}" install "torch==2.13.0"        # CPU build; an unpinned torch pulls a multi-GB CUDA build
fi
TORCH=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
if ! "$PY" -c "import importlib.metadata as m; m.version('torchvision')" 2>/dev/null; then
  case "$TORCH" in
    2.13.*) TV=0.28.0 ;;
    2.14.*) TV=0.29.1 ;;
    *) echo "setup_vbench_env: install the torchvision built for torch $TORCH into $ENV_DIR first" >&2; exit 1 ;;
  esac
  "${PIP[@]}" install --no-deps "torchvision==$TV" "numpy<2" pillow  # its other dependencies, never a torch
fi
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if ! "$PY" -c "import torchvision" 2>/dev/null; then
  cp scripts/vbench_env/fvbench_torchvision_cpu.py "$SITE/"
  echo "import fvbench_torchvision_cpu" >"$SITE/fvbench_torchvision_cpu.pth"
  "$PY" -c "import torchvision" || { echo "setup_vbench_env: torchvision does not import beside torch $TORCH" >&2; exit 1; }
  echo "torchvision's compiled ops do not load beside this torch: declared its operator schemas (see $SITE/fvbench_torchvision_cpu.py)"
fi
if ! "$PY" -c "import vbench, clip, pyiqa, pkg_resources" 2>/dev/null; then
  TV_NOW=$("$PY" -c "import importlib.metadata as m; print(m.version('torchvision'))")
  # Hold torch/torchvision where they are: pip must not swap in a CUDA build to satisfy a dependency.
  CONSTRAINTS=$(mktemp)
  trap 'rm -f "$CONSTRAINTS"' EXIT
  printf 'torch==%s\ntorchvision==%s\nnumpy<2\nsetuptools<81\n' "$("$PY" -c 'import torch; print(torch.__version__)')" "$TV_NOW" >"$CONSTRAINTS"
  "${PIP[@]}" install -c "$CONSTRAINTS" "setuptools<81" "vbench==0.1.5"
fi
"$PY" - <<'EOF'
import importlib.metadata as m
import torch
from vbench import VBench  # noqa: F401  (fails here, not at scoring time, when the environment is broken)
print(f"VBench environment: vbench {m.version('vbench')}, torch {torch.__version__}, "
      f"torchvision {m.version('torchvision')}, transformers {m.version('transformers')}, numpy {m.version('numpy')}, "
      f"pyiqa {m.version('pyiqa')}")
EOF
echo "--vbench-python $(cd "$ENV_DIR" && pwd)/bin/python"
