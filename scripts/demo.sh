#!/usr/bin/env bash
# Placeholder until the training issue lands: runs the loss benchmark.
source "$(dirname "${BASH_SOURCE[0]}")/_setup_env.sh"
echo "[demo] training is not implemented yet; running the loss benchmark instead"
exec python benchmarks/bench_losses.py "$@"
