"""Aggregation, tables and learning curves of scripts/compare_losses.py (results.json, results.md, curves.png,
class_curves.png).

A run summary (what compare_losses.py stores as `compare_result.json` in a run folder) is
``{"setup", "lr", "seed", "iterations", "train_seconds", "s_per_iter", "wall_seconds", "metrics": {AP, ...},
"per_class_AP": {class name: AP}, "curve": [[iteration, AP, oLRP], ...],
"class_curves": {class name: [[iteration, AP], ...]}}`` (class curves: empty for runs logged before they existed).
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Iterable

TABLE_KEYS = ("AP", "AP50", "AP75", "AP90", "oLRP", "oLRP_loc", "oLRP_FP", "oLRP_FN")


def read_jsonl(path: Path) -> list[dict]:
    """The records of a metrics.jsonl (a cut-off last line, from a killed run, is ignored)."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def train_time(records: Iterable[dict]) -> tuple[int, float]:
    """(iterations, training seconds without evaluation) from the epoch and stop lines of a metrics.jsonl."""
    iterations, seconds = 0, 0.0
    for r in records:
        if r.get("type") in ("epoch", "stop", "eval") and r.get("train_seconds") is not None:
            seconds += float(r["train_seconds"])
        if "iteration" in r:
            iterations = max(iterations, int(r["iteration"]))
    return iterations, seconds


def curve(records: Iterable[dict]) -> list[list[float]]:
    """[[iteration, AP, oLRP], ...] of every evaluation in a metrics.jsonl (later lines win per iteration)."""
    points = {int(r["iteration"]): [int(r["iteration"]), r["AP"], r.get("oLRP")]
              for r in records if r.get("type") in ("epoch", "eval") and r.get("AP") is not None}
    return [points[k] for k in sorted(points)]


def class_curves(records: Iterable[dict]) -> dict[str, list[list[float]]]:
    """{class name: [[iteration, AP], ...]} from the evaluations' ``AP/<class name>`` entries (a later evaluation at
    the same iteration replaces the earlier one whole, as in `curve`)."""
    by_iter = {int(r["iteration"]): {k[3:]: v for k, v in r.items() if k.startswith("AP/") and v is not None}
               for r in records if r.get("type") in ("epoch", "eval") and r.get("AP") is not None}
    names = sorted({name for aps in by_iter.values() for name in aps})
    return {name: [[it, by_iter[it][name]] for it in sorted(by_iter) if name in by_iter[it]] for name in names}


def val_annotations(run_dir: Path) -> Path:
    """The val annotation file of a run, from its resolved config.yaml (a relative data root is the repository's:
    compare_losses.py runs train.py from there). Raises OSError, KeyError or TypeError for a broken run folder."""
    import yaml

    data = yaml.safe_load((run_dir / "config.yaml").read_text())["data"]
    return Path(__file__).resolve().parents[1] / data["root"] / "annotations" / f"instances_{data['val_split']}.json"


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value); NaN/None values are left out."""
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return math.nan, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def aggregate(summaries: list[dict], setups: list[str], best_lr: dict[str, float]) -> dict[str, Any]:
    """Per setup: best lr, the lr grid (AP of each tuning run), the best-lr runs and mean/std over their seeds."""
    out: dict[str, Any] = {}
    for setup in setups:
        mine = [s for s in summaries if s["setup"] == setup]
        runs = sorted((s for s in mine if s["lr"] == best_lr.get(setup)), key=lambda s: s["seed"])
        grid = {str(s["lr"]): s["metrics"].get("AP") for s in mine if s.get("tuning")}
        stats = {k: mean_std([r["metrics"].get(k) for r in runs]) for k in TABLE_KEYS}
        for key in ("s_per_iter", "iterations", "train_seconds", "wall_seconds"):
            stats[key] = mean_std([r.get(key) for r in runs])
        classes = sorted({c for r in runs for c in r.get("per_class_AP", {})})
        per_class = {c: mean_std([r["per_class_AP"].get(c) for r in runs]) for c in classes}
        out[setup] = {"best_lr": best_lr.get(setup), "grid_AP": grid, "seeds": [r["seed"] for r in runs],
                      "mean": {k: v[0] for k, v in stats.items()}, "std": {k: v[1] for k, v in stats.items()},
                      "per_class_AP": {c: v[0] for c, v in per_class.items()}, "runs": runs}
    return out


def format_mean_std(mean: float, std: float | None, scale: float = 1.0, digits: int = 3) -> str:
    if mean is None or not math.isfinite(mean):
        return "–"
    text = f"{mean * scale:.{digits}f}"
    return text + (f" ± {std * scale:.{digits}f}" if std is not None else "")


def markdown(table: dict[str, Any], settings: dict[str, Any]) -> str:
    """results.md: settings, the mean ± std table, the lr grid and per-class AP."""
    seeds = settings["seeds"]
    lines = [f"# Loss comparison on `{settings['data']}`", "",
             f"Command: `{settings['command']}`", "",
             *_earlier_sittings(settings),
             f"Budget: {settings['budget']}; seeds {', '.join(map(str, seeds))}"
             f"{' (ONE seed: no spread, not a comparison)' if len(seeds) == 1 else ''}; lr grid "
             f"{', '.join(map(str, settings['lrs']))} tuned on seed {seeds[0]} by final val AP (the same grid for "
             "every "
             f"setup); device {settings['device']}. Mean ± sample std over the seeds of each setup's best lr, final "
             "weights on the val split. train min: training steps only; wall min: the whole run (start-up and "
             "evaluations included).", "",
             "| setup | best lr | seeds | iterations | train min | wall min | s/iter | "
             + " | ".join(TABLE_KEYS) + " |",
             "|---" * (7 + len(TABLE_KEYS)) + "|"]
    for setup, row in table.items():
        m, s = row["mean"], row["std"]
        cells = [setup, str(row["best_lr"]), str(len(row["seeds"])),
                 format_mean_std(m["iterations"], None, digits=0),
                 format_mean_std(m["train_seconds"], s["train_seconds"], 1 / 60, 1),
                 format_mean_std(m["wall_seconds"], s["wall_seconds"], 1 / 60, 1),
                 format_mean_std(m["s_per_iter"], s["s_per_iter"])]
        cells += [format_mean_std(m[k], s[k]) for k in TABLE_KEYS]
        lines.append("| " + " | ".join(cells) + " |")
    lrs = [str(lr) for lr in settings["lrs"]]
    lines += ["", f"Tuning (seed {seeds[0]}): final val AP per lr", "",
              "| setup | " + " | ".join(lrs) + " |", "|---" * (1 + len(lrs)) + "|"]
    for setup, row in table.items():
        grid = (format_mean_std(row["grid_AP"].get(lr), None) for lr in lrs)
        lines.append(f"| {setup} | " + " | ".join(grid) + " |")
    classes = sorted({c for row in table.values() for c in row["per_class_AP"]})
    if classes:
        lines += ["", "Per-class AP (mean over the seeds)", "", "| setup | " + " | ".join(classes) + " |",
                  "|---" * (1 + len(classes)) + "|"]
        for setup, row in table.items():
            per_class = (format_mean_std(row["per_class_AP"].get(c), None) for c in classes)
            lines.append(f"| {setup} | " + " | ".join(per_class) + " |")
    return "\n".join(lines) + "\n"


def _earlier_sittings(settings: dict[str, Any]) -> list[str]:
    """results.md lines naming the rows that earlier sittings of the same settings tabulated, and the setups left
    out of the table."""
    earlier = {setup: cmd for setup, cmd in (settings.get("commands") or {}).items() if cmd != settings["command"]}
    lines = []
    if earlier:
        lines += ["Rows from earlier sittings with the same data, configs, device, seeds, lr grid, kind of budget and "
                  "overrides, tabulated again from their runs:", "",
                  *(f"- {setup}: `{cmd}`" for setup, cmd in earlier.items()), ""]
    if settings.get("left_out"):
        lines += ["Left out, from the earlier table in this folder:", "",
                  *(f"- {reason}" for reason in settings["left_out"]), ""]
    return lines


def plot_curves(table: dict[str, Any], path: Path) -> None:
    """curves.png: val AP and oLRP against iterations, one line per setup (mean over its seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for setup, row in table.items():
        by_iter: dict[int, list[list[float]]] = {}
        for run in row["runs"]:
            for it, ap, olrp in run.get("curve", []):
                by_iter.setdefault(int(it), []).append([ap, olrp])
        its = sorted(by_iter)
        for ax, k in zip(axes, (0, 1)):
            ys = [mean_std([p[k] for p in by_iter[i]])[0] for i in its]
            ax.plot(its, ys, marker="o", ms=3, label=f"{setup} (lr {row['best_lr']})")
    for ax, name in zip(axes, ("val AP (higher is better)", "val oLRP (lower is better)")):
        ax.set_xlabel("iteration")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_class_curves(table: dict[str, Any], path: Path) -> bool:
    """class_curves.png: val AP of each class against iterations, a panel per class, one line per setup (mean over
    the seeds that logged it). Returns False (and removes an earlier figure) when no run logged per-class AP."""
    curves: dict[str, dict[str, dict[int, list[float]]]] = {}  # class -> setup -> iteration -> APs over seeds
    for setup, row in table.items():
        for run in row["runs"]:
            for name, points in (run.get("class_curves") or {}).items():
                for it, ap in points:
                    curves.setdefault(name, {}).setdefault(setup, {}).setdefault(int(it), []).append(ap)
    if not curves:
        path.unlink(missing_ok=True)
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 4), squeeze=False)
    for ax, (name, by_setup) in zip(axes[0], sorted(curves.items())):
        for setup, by_iter in by_setup.items():
            its = sorted(by_iter)
            ax.plot(its, [mean_std(by_iter[i])[0] for i in its], marker="o", ms=3,
                    label=f"{setup} (lr {table[setup]['best_lr']})")
        ax.set_xlabel("iteration")
        ax.set_title(f"val AP: {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
