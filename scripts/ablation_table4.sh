#!/usr/bin/env bash
# Paper Table 4 (R-50, 500 scale): self-balance vs constant localisation weights (IoU and GIoU), and SB initial values.
# The SB columns of the weight rows are the Table 2 runs t2_alrp_iou_sb / t2_alrp_giou_sb (run them with table 2).
# Usage: scripts/ablation_table4.sh [--dry-run] [--smoke] [--gpus N] [--output-dir DIR] [--set key=value ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Python: $PYTHON, else the project venv, else python3 on PATH.
py="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
configs=()
for box in iou giou; do
  for w in 1 5 10 15 20; do configs+=("configs/t4_${box}_w${w}.yaml"); done
done
for init in 1 10 50 100; do configs+=("configs/t4_sbinit_${init}.yaml"); done
exec "$py" scripts/sweep.py --sweep table4 "${configs[@]}" "$@"
