#!/usr/bin/env bash
# The regression gate CI runs: a small deterministic sweep, then `fvbench check` against the committed baseline.
# To rewrite the baseline on purpose: bash scripts/ci_sweep.sh --update
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)/ci-run
.venv/bin/fvbench run --suite ci --presets cpu-flashvideo-s,cpu-dit-s --stage1-nfe 10,30 --stage2-nfe 2,4 \
  --limit 2 --samples 1 --out "$out"
.venv/bin/fvbench check "$out" --baseline reports/ci-baseline.yaml "$@"
