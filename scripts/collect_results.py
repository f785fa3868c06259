#!/usr/bin/env python
"""Collect the evaluation metrics of run folders into one markdown table in the paper's format.

Usage: `python scripts/collect_results.py runs/table2/* [--out results.md]`

For every run folder: `eval_metrics.json` (written by the sweeps through `eval.py --json-out`) and the resolved
config (`config.yaml`, written by train.py). Each run gives one row with AP, AP50, AP75, AP90, oLRP and its
components (all x100, as in the paper), rho, the number of loss hyperparameters, and, where the paper published
that row, the paper's AP / oLRP / rho beside ours. Runs without metrics are listed as pending. With
`--per-class`, a second table gives rho per class (rows: COCO category ids; columns: runs) and its average.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

METRICS_FILE = "eval_metrics.json"
CONFIG_FILES = ("config.yaml", "config_resolved.yaml", "resolved_config.yaml")
PERCENT_KEYS = ("AP", "AP50", "AP75", "AP90", "oLRP", "oLRP_loc", "oLRP_FP", "oLRP_FN")
COLUMNS = ("run", "method", "#hp", *PERCENT_KEYS, "rho", "paper AP", "paper oLRP", "paper rho", "paper source")


@dataclass(frozen=True)
class Published:
    """A row the paper published (values in percent, rho as a coefficient); None where not published."""

    ap: float | None
    olrp: float | None
    rho: float | None
    source: str


# From /work/shared/docs/reference-settings.md and the paper's text (COCO; Table 2/A.12 on minival, Table 6 on
# test-dev). Rows whose numbers are not given there (e.g. Table 4, most of Table A.12) have no entry.
_T2_APLOSS = Published(35.5, 71.0, None, "Table 2 (minival)")
_T2_GIOU_SB = Published(38.9, 68.4, 0.48, "Table 2 (minival); rho App. G.1")
_T2_ATSS = Published(40.2, 67.3, None, "Table 2 (minival)")
PAPER: dict[str, Published] = {
    "aploss": _T2_APLOSS, "alrp_giou_sb": _T2_GIOU_SB, "alrp_giou_sb_atss": _T2_ATSS,
    "ap_giou": Published(36.5, None, None, "App. G.1 text (minival)"),
    "alrp500_r50": Published(41.3, None, None, "Table 6 (test-dev)"),
    "alrp500_r101": Published(42.8, None, None, "Table 6 (test-dev)"),
    "alrp500_x101": Published(44.6, None, None, "Table 6 (test-dev)"),
    "alrp800_r101": Published(45.9, None, None, "Table 6 (test-dev)"),
    "alrp800_x101": Published(47.8, None, None, "Table 6 (test-dev)"),
    "alrp800_x101_dcn": Published(48.9, None, None, "Table 6 (test-dev)"),
}

_LOSS_NAMES = {"alrp": "aLRP", "ap": "AP Loss", "focal": "Focal"}
_BOX_NAMES = {"iou": "IoU", "giou": "GIoU", "smooth_l1": "Smooth-L1", "l1": "L1"}


class ResultsError(RuntimeError):
    """A run folder's metrics or config cannot be read: the message names the file."""


def _section(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key) or {}
    return value if isinstance(value, dict) else {}


def loss_hyperparameters(loss: dict[str, Any]) -> int:
    """Hyperparameters of the loss as counted in the paper's Table 1: aLRP 1 (delta), AP Loss + Smooth-L1 3
    (delta, beta, weight), Focal + Smooth-L1 4 (alpha, gamma, beta, weight); self-balance removes the weight;
    focal with gamma 0 (alpha-balanced cross-entropy) has alpha only."""
    name = loss.get("name", "alrp")
    count = {"alrp": 1, "ap": 1, "focal": 2}.get(name)
    if count is None:
        raise ValueError(f"unknown loss.name {name!r}")
    if name == "focal" and loss.get("focal_gamma") == 0:
        count = 1
    if name != "alrp" and loss.get("box_loss") == "smooth_l1":
        count += 1  # Smooth-L1's beta
    if not loss.get("self_balance", name == "alrp"):
        count += 1  # the constant localisation weight
    return count


def describe_method(config: dict[str, Any]) -> str:
    """Short method text from a resolved config, e.g. `aLRP (GIoU, SB 50) + ATSS, resnet50, 512`."""
    loss, model, data = _section(config, "loss"), _section(config, "model"), _section(config, "data")
    name = loss.get("name", "?")
    box = _BOX_NAMES.get(loss.get("box_loss"), str(loss.get("box_loss", "?")))
    balance = f"SB {loss.get('sb_init', 50):g}" if loss.get("self_balance") else f"w={loss.get('loc_weight', 1):g}"
    label = "CE (alpha-balanced)" if name == "focal" and loss.get("focal_gamma") == 0 else _LOSS_NAMES.get(name, name)
    text = f"{label} ({'w ' if name == 'alrp' else '+ '}{box}, {balance})"
    if loss.get("wrong_target"):
        text += " wrong target"
    if _section(model, "assigner").get("name") == "atss":
        text += " + ATSS"
    backbone = _section(model, "backbone").get("name")
    if backbone:
        text += f", {backbone}"
    if data.get("train_size"):
        text += f", {data['train_size']}"
    return text


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise ResultsError(f"{path}: expected a JSON object of metrics, got {type(value).__name__}")
    return value


def config_path(run_dir: Path) -> Path | None:
    """The resolved config file of a run folder (None when there is none)."""
    return next((run_dir / n for n in CONFIG_FILES if (run_dir / n).is_file()), None)


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """The resolved config saved in the run folder, as a plain dict (None when absent)."""
    path = config_path(run_dir)
    if path is None:
        return None
    try:
        value = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ResultsError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from err
    return value if isinstance(value, dict) else {}


def _percent(value: Any) -> str:
    if value is None or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        return "–"  # pycocotools gives -1 where a range has no ground truth
    return f"{100.0 * value:.1f}"


def _plain(value: float | None, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def run_name(run_dir: Path, config: dict[str, Any] | None) -> str:
    """The run's `name` from its resolved config, else the folder name."""
    return str((config or {}).get("name") or run_dir.name)


def run_row(run_dir: Path) -> list[str]:
    """One table row for a run folder (metrics as percentages; 'pending' when the run has no metrics yet)."""
    config = read_config(run_dir)
    name = run_name(run_dir, config)
    method = describe_method(config) if config is not None else "? (no resolved config)"
    try:
        hp = str(loss_hyperparameters(_section(config, "loss"))) if config is not None else "?"
    except ValueError as err:
        raise ResultsError(f"{config_path(run_dir)}: {err}") from err
    paper = PAPER.get(name) or PAPER.get(run_dir.name)
    paper_cells = ([_plain(paper.ap, ".1f"), _plain(paper.olrp, ".1f"), _plain(paper.rho, ".2f"), paper.source]
                   if paper else ["–", "–", "–", ""])
    metrics_path = run_dir / METRICS_FILE
    if not metrics_path.is_file():
        print(f"[collect] {run_dir}: no {METRICS_FILE} yet, listed as pending", file=sys.stderr)
        cells = ["pending"] + ["–"] * (len(PERCENT_KEYS) - 1) + ["–"]
    else:
        metrics = read_json(metrics_path)
        rho = metrics.get("rho")
        cells = [_percent(metrics.get(k)) for k in PERCENT_KEYS]
        cells.append(_plain(rho if isinstance(rho, (int, float)) else None, ".2f"))
    return [name, method, hp, *cells, *paper_cells]


def results_table(run_dirs: list[Path]) -> str:
    """The markdown table (header, separator, one row per run folder)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(run_row(d)) + " |" for d in run_dirs]
    note = ("AP and oLRP columns are percentages (x100); oLRP is an error (lower is better); rho: Spearman "
            "correlation between scores and IoUs of true positives, averaged over classes; #hp: loss "
            "hyperparameters (paper Table 1 count). Paper columns: published numbers for the same setting.")
    return "\n".join(lines) + "\n\n" + note + "\n"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def per_class_rho_table(run_dirs: list[Path]) -> str:
    """Markdown table of rho per class from the runs' eval reports: one row per category id (numeric order), one
    column per run with metrics, then a `mean` row (the report's `rho`, averaged over classes with a defined rho).
    Empty string when no run has metrics."""
    runs = []
    for run_dir in run_dirs:
        path = run_dir / METRICS_FILE
        if path.is_file():
            metrics = read_json(path)
            per_class = metrics.get("per_class") or {}
            if not isinstance(per_class, dict):
                raise ResultsError(f"{path}: per_class must be an object keyed by category id")
            name = run_name(run_dir, read_config(run_dir))
            runs.append((name, per_class, _number(metrics.get("rho"))))
    if not runs:
        return ""
    cat_ids = sorted({str(c) for _, per_class, _ in runs for c in per_class},
                     key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c))
    lines = ["| category id | " + " | ".join(name for name, _, _ in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for cat in cat_ids:
        cells = [_plain(_number((per_class.get(cat) or {}).get("rho")), ".2f") for _, per_class, _ in runs]
        lines.append(f"| {cat} | " + " | ".join(cells) + " |")
    lines.append("| mean | " + " | ".join(_plain(rho, ".2f") for _, _, rho in runs) + " |")
    note = ("rho per class: Spearman correlation of scores and IoUs of the class's true positives at IoU 0.5 "
            "(– where it has fewer than 2 or constant ones).")
    return "\n".join(lines) + "\n\n" + note + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+", type=Path, help="run folders (files among them are ignored)")
    p.add_argument("--out", type=Path, default=None, help="write the table here too (markdown)")
    p.add_argument("--per-class", action="store_true", help="add a table of rho per class and run")
    args = p.parse_args(argv)
    missing = [str(d) for d in args.run_dirs if not d.exists()]
    if missing:
        p.error("run folder(s) not found: " + ", ".join(missing))
    run_dirs = [d for d in args.run_dirs if d.is_dir()]
    if not run_dirs:
        p.error("no run folders among the arguments")
    try:
        table = results_table(run_dirs)
        if args.per_class:
            table += "\n" + per_class_rho_table(run_dirs)
    except ResultsError as err:
        print(f"[collect] error: {err}", file=sys.stderr)
        return 2
    print(table, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
        print(f"[collect] wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
