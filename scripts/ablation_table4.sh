#!/usr/bin/env bash
# Paper Table 4 (R-50, 500 scale): self-balance vs constant localisation weights (IoU and GIoU), and SB initial values.
# The SB columns of the weight rows are the Table 2 runs table2/alrp_iou_sb / table2/alrp_giou_sb (run them with table 2);
# the SB initial value 50 is table2/alrp_giou_sb itself.
# Usage: scripts/ablation_table4.sh [--dry-run] [--smoke] [--gpus N] [--output-dir DIR] [--set key=value ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Python: $PYTHON, else the project venv, else python3 on PATH.
py="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
configs=()
configs+=("configs/table2/alrp_iou_nosb.yaml")  # IoU, constant weight 1 is the Table 2 row
for w in 5 10 15 20; do configs+=("configs/table4/iou_w${w}.yaml"); done
for w in 1 5 10 15 20; do configs+=("configs/table4/giou_w${w}.yaml"); done
for init in 1 10; do configs+=("configs/table4/sbinit_${init}.yaml"); done
configs+=("configs/table2/alrp_giou_sb.yaml" "configs/table4/sbinit_100.yaml")
exec "$py" scripts/sweep.py --sweep table4 "${configs[@]}" "$@"
