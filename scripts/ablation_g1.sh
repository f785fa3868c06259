#!/usr/bin/env bash
# Paper Appendix G.1, Table A.12 (R-50, 500 scale): AP Loss with Smooth-L1 / IoU / GIoU box losses, without and with SB.
# Usage: scripts/ablation_g1.sh [--dry-run] [--smoke] [--gpus N] [--output-dir DIR] [--set key=value ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Python: $PYTHON, else the project venv, else python3 on PATH.
py="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
exec "$py" scripts/sweep.py --sweep g1 \
  configs/table2/aploss.yaml configs/g1/ap_sl1_sb.yaml \
  configs/g1/ap_iou.yaml configs/g1/ap_iou_sb.yaml \
  configs/g1/ap_giou.yaml configs/g1/ap_giou_sb.yaml \
  "$@"
