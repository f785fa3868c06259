#!/usr/bin/env bash
# The CPU demo (docs/demo.md): set up .venv, prepare the tree-crown tiles, train a RetinaNet (ResNet-18, GroupNorm)
# from scratch with aLRP Loss (GIoU + self-balance) on the CPU, evaluate the final weights on the held-out val
# split, print AP/oLRP and where the run folder, TensorBoard logs and plots are. About 10 minutes on 2 cores.
#
#   bash scripts/demo.sh                          # run folder runs/demo_trees_<YYYYmmdd_HHMMSS>
#   bash scripts/demo.sh train.epochs=10          # KEY=VALUE config overrides, passed to train.py and eval.py
#
# Every run gets a fresh, timestamped run folder, so a re-run never collides with (nor deletes) an earlier one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup_env.sh"  # cd to the repository root, create/activate .venv

config=configs/demo/trees.yaml
name="demo_trees_$(date +%Y%m%d_%H%M%S)"
overrides=("name=${name}" "$@")
# One intra-op thread per core; the data loader runs in the main process (data.num_workers: 0).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
start=$SECONDS

step() { echo; echo "[demo] $(date +%H:%M:%S) (+$((SECONDS - start)) s) $*"; }

step "1/3 preparing the demo data (datasets/trees; a no-op when it exists)"
python scripts/prepare_demo_data.py --out datasets/trees

step "2/3 training with aLRP Loss on the CPU (${config}, run ${name})"
python train.py --config "$config" --set "${overrides[@]}"

run_dir="$(python -c 'import sys; from training.config import load_config; print(load_config(sys.argv[1], sys.argv[2:]).run_dir)' \
  "$config" "${overrides[@]}")"
checkpoint="${run_dir}/checkpoints/$(cat "${run_dir}/checkpoints/latest")"

step "3/3 evaluating the final weights on the held-out val split"
python eval.py --config "$config" --checkpoint "$checkpoint" --split val --set "${overrides[@]}" \
  --json-out "${run_dir}/eval/metrics_val.json" --plots "${run_dir}/eval/plots_val" --visualize 4

elapsed=$((SECONDS - start))
cat <<EOF

[demo] done in $((elapsed / 60)) min $((elapsed % 60)) s (data + training + evaluation)
  run folder      ${run_dir}   (config.yaml, log.txt, metrics.jsonl, checkpoints/)
  final weights   ${checkpoint}
  metrics (JSON)  ${run_dir}/eval/metrics_val.json
  plots           ${run_dir}/eval/plots_val   (PR and LRP-vs-threshold curves; vis/: 4 val tiles with boxes)
  TensorBoard     tensorboard --logdir ${run_dir}/tensorboard
EOF
