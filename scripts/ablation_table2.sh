#!/usr/bin/env bash
# Paper Table 2 (ablation, R-50, 500 scale, COCO minival): AP Loss -> aLRP (IoU) -> +SB -> GIoU -> +ATSS.
# Usage: scripts/ablation_table2.sh [--dry-run] [--smoke] [--gpus N] [--output-dir DIR] [--set key=value ...]
# Then: python scripts/collect_results.py runs/table2/* --out runs/table2/results.md
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Python: $PYTHON, else the project venv, else python3 on PATH.
py="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
exec "$py" scripts/sweep.py --sweep table2 \
  configs/table2/aploss.yaml \
  configs/table2/alrp_iou_nosb.yaml \
  configs/table2/alrp_iou_sb.yaml \
  configs/table2/alrp_giou_sb.yaml \
  configs/table2/alrp_giou_sb_atss.yaml \
  "$@"
