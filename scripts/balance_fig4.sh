#!/usr/bin/env bash
# Paper Fig. 4 (Theorem 2): summed positive vs negative classification-gradient magnitudes per iteration for
# aLRP Loss vs Focal Loss vs alpha-balanced cross-entropy (R-50, 500 scale), logged every iteration.
# Usage: scripts/balance_fig4.sh [--dry-run] [--smoke] [--gpus N] [--output-dir DIR] [--set key=value ...]
# Then: python scripts/plot_balance.py runs/balance/* --out runs/balance/fig4.png
# (add configs/g3/wrong_target.yaml to the list for the Appendix G.3 "wrong target" demonstration).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Python: $PYTHON, else the project venv, else python3 on PATH.
py="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
exec "$py" scripts/sweep.py --sweep balance \
  configs/table2/alrp_giou_sb.yaml configs/fig4/focal.yaml configs/fig4/ce.yaml \
  --set train.log_interval=1 \
  "$@"
