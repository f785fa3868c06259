#!/usr/bin/env python
"""The paper's Fig. 4 from training logs: summed positive vs negative classification-gradient magnitudes.

Usage: `python scripts/plot_balance.py runs/balance/alrp_giou_sb runs/balance/focal --out fig4.png`

Reads `metrics.jsonl` of each run folder (train.py's JSON lines: records with `type: iter`, `iteration`,
`grad_pos_sum`, `grad_neg_sum`; use `--set train.log_interval=1` for one point per iteration); when a run has no
such lines, falls back to the TensorBoard scalars `train/grad_pos_sum`, `train/grad_neg_sum`. Left panel: both sums
per iteration for every run (positives solid, negatives dashed); right panel: their ratio, which Theorem 2 says
is exactly 1 for aLRP Loss (and AP Loss) but not for focal or cross-entropy losses.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

JSONL_FILE = "metrics.jsonl"
TB_DIR = "tensorboard"
TB_TAGS = ("train/grad_pos_sum", "train/grad_neg_sum")


class BalanceLogError(RuntimeError):
    """A run folder has no readable gradient statistics: the message names the folder or file."""


def read_jsonl(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(iterations, pos sums, neg sums) from train.py's JSON lines; empty arrays when none have both sums."""
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise BalanceLogError(f"{path}:{lineno}: not valid JSON ({err})") from err
        if record.get("type", "iter") != "iter":
            continue
        pos, neg, it = record.get("grad_pos_sum"), record.get("grad_neg_sum"), record.get("iteration")
        if isinstance(pos, (int, float)) and isinstance(neg, (int, float)) and isinstance(it, int):
            rows.append((it, float(pos), float(neg)))
    rows.sort()
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def read_tensorboard(log_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same from TensorBoard event files (steps where both scalars were written)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if not all(tag in acc.Tags().get("scalars", []) for tag in TB_TAGS):
        return np.zeros(0), np.zeros(0), np.zeros(0)
    pos = {e.step: e.value for e in acc.Scalars(TB_TAGS[0])}
    neg = {e.step: e.value for e in acc.Scalars(TB_TAGS[1])}
    steps = sorted(set(pos) & set(neg))
    return (np.asarray(steps, dtype=np.float64), np.asarray([pos[s] for s in steps], dtype=np.float64),
            np.asarray([neg[s] for s in steps], dtype=np.float64))


def load_balance(run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(iterations (T,), summed |dL/ds| over positives (T,), over negatives (T,)) of one run folder."""
    series = (np.zeros(0),) * 3
    if (run_dir / JSONL_FILE).is_file():
        series = read_jsonl(run_dir / JSONL_FILE)
    if series[0].size == 0 and (run_dir / TB_DIR).is_dir():
        series = read_tensorboard(run_dir / TB_DIR)
    if series[0].size == 0:
        raise BalanceLogError(f"{run_dir}: no grad_pos_sum/grad_neg_sum in {JSONL_FILE} or {TB_DIR}/ "
                              "(is it a train.py run folder?)")
    return series


def plot(runs: list[tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray]]], out: Path) -> None:
    """Writes the two-panel figure (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_sum, ax_ratio) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for i, (label, (it, pos, neg)) in enumerate(runs):
        color = f"C{i}"
        ax_sum.plot(it, pos, color=color, linestyle="-", label=f"{label}: positives")
        ax_sum.plot(it, neg, color=color, linestyle="--", label=f"{label}: negatives")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(neg > 0, pos / neg, np.nan)
        ax_ratio.plot(it, ratio, color=color, label=label)
    ax_sum.set(xlabel="iteration", ylabel="sum of |dL/ds|", title="Gradient magnitudes (paper Fig. 4)")
    ax_sum.set_yscale("log")
    ax_ratio.axhline(1.0, color="gray", linewidth=0.8, linestyle=":")
    ax_ratio.set(xlabel="iteration", ylabel="positives / negatives", title="Balance (Theorem 2: 1 for aLRP)")
    ax_ratio.set_yscale("log")
    ax_sum.legend(fontsize="small")
    ax_ratio.legend(fontsize="small")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+", type=Path, help="train.py run folders (files among them are ignored)")
    p.add_argument("--out", type=Path, required=True, help="output PNG")
    p.add_argument("--labels", nargs="+", default=None, help="legend labels (default: run folder names)")
    args = p.parse_args(argv)
    missing = [str(d) for d in args.run_dirs if not d.exists()]
    if missing:
        p.error("run folder(s) not found: " + ", ".join(missing))
    run_dirs = [d for d in args.run_dirs if d.is_dir()]  # a glob like runs/table2/* also matches results.md
    if not run_dirs:
        p.error("no run folders among the arguments")
    if args.labels is not None and len(args.labels) != len(run_dirs):
        p.error(f"--labels gives {len(args.labels)} labels for {len(run_dirs)} run folders")
    labels = args.labels or [d.name for d in run_dirs]
    try:
        runs = [(label, load_balance(d)) for label, d in zip(labels, run_dirs)]
    except BalanceLogError as err:
        print(f"[plot_balance] error: {err}", file=sys.stderr)
        return 2
    plot(runs, args.out)
    for label, (it, pos, neg) in runs:
        ratio = np.median(pos[neg > 0] / neg[neg > 0]) if np.any(neg > 0) else float("nan")
        print(f"{label}: {it.size} points, median pos/neg ratio {ratio:.3f}")
    print(f"[plot_balance] wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
