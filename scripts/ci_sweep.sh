#!/usr/bin/env bash
# The regression gate CI runs: two small deterministic sweeps, each checked by `fvbench check` against its committed
# baseline. 1) random-weight CPU-scale presets: FLOPs, NFE, checksums, offline metrics, in-run speed ratios.
# 2) the trained ShapesWorld cascade on all 18 held-out prompts (1 sample each) at stage-II NFE 1 and 4, and the
#    patch-4 single-stage baseline at 50 NFE: FLOPs, NFE, checksums, and the exact quality metrics (attribute accuracy,
#    detail ratio, temporal RMS) within the
#    tolerances written in reports/ci-shapesworld-baseline.yaml.
# To rewrite the baselines on purpose (hand-set tolerances are kept): bash scripts/ci_sweep.sh --update
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
.venv/bin/fvbench run --suite ci --presets cpu-flashvideo-s,cpu-dit-s --stage1-nfe 10,30 --stage2-nfe 2,4 \
  --limit 2 --samples 1 --out "$tmp/ci-run"
.venv/bin/fvbench run --suite shapesworld --presets sw-flashvideo-s,sw-dit-p4-s --stage2-nfe 1,4 --limit all --samples 1 \
  --metrics sw_all_three,sw_detail_ratio,sw_temporal_rms_px --out "$tmp/ci-shapesworld"
status=0
.venv/bin/fvbench check "$tmp/ci-run" --baseline reports/ci-baseline.yaml "$@" || status=$?
.venv/bin/fvbench check "$tmp/ci-shapesworld" --baseline reports/ci-shapesworld-baseline.yaml "$@" || status=$?
exit $status
