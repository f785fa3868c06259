#!/usr/bin/env bash
# Paper Table 6 (state of the art, aLRP Loss + ATSS): aLRPLoss500 R-50/R-101/X-101, aLRPLoss800 R-101/X-101/X-101-DCN.
# The paper reports these on COCO test-dev; eval.py scores minival (val2017) unless data.val_split points elsewhere.
# Usage: scripts/table6.sh [--dry-run] [--smoke] [--gpus N] [--output-dir DIR] [--set key=value ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Python: $PYTHON, else the project venv, else python3 on PATH.
py="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
exec "$py" scripts/sweep.py --sweep table6 \
  configs/table6/alrp500_r50.yaml configs/table6/alrp500_r101.yaml configs/table6/alrp500_x101.yaml \
  configs/table6/alrp800_r101.yaml configs/table6/alrp800_x101.yaml configs/table6/alrp800_x101_dcn.yaml \
  "$@"
