#!/usr/bin/env bash
# Set up fvbench in ./.venv: Python venv, torch (the CPU wheel unless a torch is already installed there),
# fvbench itself (editable, with test extras) and VBench's prompt data (without VBench's conflicting dependencies).
# GPU users: create .venv and install your CUDA torch into it first; this script then leaves torch alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${PIP[@]}" install "torch==2.13.0"        # CPU build; an unpinned torch would pull a multi-GB CUDA build
fi
"${PIP[@]}" install -e ".[test,ray]"
"${PIP[@]}" install --no-deps "vbench==0.1.5"  # only for VBench_full_info.json (the prompt suites); never imported
echo "fvbench is set up in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
