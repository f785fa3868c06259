#!/usr/bin/env python
"""Where along the IoU axis do two losses differ? AP at each COCO IoU threshold, from the saved detections.

For every finished run of a `scripts/compare_losses.py` table (`<compare>/runs/<setup>/<run>/`) at its setup's best
lr (the one the table's results.json names), the final weights' val detections (`eval/<final
checkpoint>_val_results.json`, written by eval.py; `eval/final_val_results.json` for the torchvision row, which
keeps no checkpoint) are scored again against the run's val annotations: AP at each IoU threshold 0.50, 0.55, ...,
0.95 (area all, 100 detections per image), overall and per class, and rho, the Spearman correlation between the
scores and the IoUs of the true positives at IoU 0.5 (mean over classes; the paper's measure of how well a
classifier's scores follow localisation quality). No model runs: this reads detections only. Runs without saved
detections (torchvision runs from before they were saved) are listed and left out.

Outputs in `--out` (default `<compare>/ap_by_iou`): ap_by_iou.json, ap_by_iou.md (mean ± std over each setup's
runs) and ap_by_iou.png (AP against the IoU threshold, one line per setup, one panel per class).

Example: python benchmarks/ap_by_iou.py --compare runs/compare/bccd_cpu32 --setups alrp_giou_sb,focal_sl1
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import compare_report as report  # noqa: E402
from alrp.metrics.coco import load_gt  # noqa: E402
from alrp.metrics.evaluation import compute_evaluation  # noqa: E402
from training.checkpoint import find_latest  # noqa: E402

RESULT_FILE = "compare_result.json"  # compare_losses.py's mark of a finished run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compare", type=Path, required=True, help="a compare_losses.py --out folder")
    p.add_argument("--setups", default="", help="comma-separated (default: every setup with finished runs)")
    p.add_argument("--out", type=Path, default=None, help="default <compare>/ap_by_iou")
    args = p.parse_args(argv)
    if not (args.compare / "runs").is_dir():
        p.error(f"--compare {args.compare}: no runs/ folder (not a compare_losses.py output)")
    args.setups = [s for s in args.setups.split(",") if s] or sorted(
        d.name for d in (args.compare / "runs").iterdir() if d.is_dir())
    args.out = args.out or args.compare / "ap_by_iou"
    return args


def run_detections(run_dir: Path) -> tuple[Path, Path] | None:
    """(val annotation file, final weights' val detections) of a finished run; None when it saved no detections.

    The final checkpoint is the one `checkpoints/latest` names, even when the weights themselves were not kept; a run
    with no checkpoint at all (the torchvision row) is read from `eval/final_val_results.json`.
    Raises OSError, KeyError or TypeError for a run folder without a readable config.yaml.
    """
    pointer = run_dir / "checkpoints" / "latest"
    latest = Path(pointer.read_text().strip()) if pointer.is_file() else find_latest(run_dir)
    stem = latest.stem if latest else "final"  # no checkpoint: train_torchvision.py's FINAL_DETECTIONS
    detections = run_dir / "eval" / f"{stem}_val_results.json"
    return (report.val_annotations(run_dir), detections) if detections.is_file() else None


def _lr_of(run_dir: Path) -> str:
    return run_dir.name.split("_seed")[0]  # compare_losses.py names runs lr<lr>_seed<seed>


def table_runs(compare: Path, setup: str, results: dict) -> tuple[list[Path], list[str]]:
    """The setup's finished runs at its best lr, and the runs left out with why.

    The best lr is the one the table's results.json (`results`: its "setups", {} without the file) names; without
    one there, a folder whose runs all share one lr uses that lr. A setup whose lr grid is unfinished has no best lr
    yet: all its runs are left out.
    """
    run_dirs = sorted(d for d in (compare / "runs" / setup).glob("*/") if d.is_dir())
    if not run_dirs:
        return [], [f"{setup} (no runs)"]
    results_path = compare / "results.json"
    lrs = {_lr_of(d) for d in run_dirs}
    if results.get(setup, {}).get("best_lr") is not None:
        keep = f"lr{results[setup]['best_lr']:g}"
    elif setup in results:
        return [], [f"{setup} (lr grid unfinished: no best lr in {results_path})"]
    elif len(lrs) == 1:
        keep = lrs.pop()
    else:
        return [], [f"{setup} (runs at {', '.join(sorted(lrs))} and no best lr in {results_path}: run "
                    "compare_losses.py --report with this setup first)"]
    left_out = [f"{setup}/{d.name} ({'not the best lr' if _lr_of(d) != keep else 'not finished'})"
                for d in run_dirs if _lr_of(d) != keep or not (d / RESULT_FILE).is_file()]
    return [d for d in run_dirs if _lr_of(d) == keep and (d / RESULT_FILE).is_file()], left_out


def ap_by_iou(annotations: Path, detections: Path) -> dict:
    """{"iou": [0.5, ..., 0.95], "AP": [T], "class_AP": {name: [T]}, "rho": float or None} of one run's detections.

    AP is pycocotools' 101-point interpolated precision averaged over recall and over the classes with ground truth
    at each IoU threshold; "AP" averaged over the thresholds is COCO AP.
    """
    gt = load_gt(annotations)
    evaluation = compute_evaluation(gt, json.loads(detections.read_text()), str(detections))
    precision = evaluation.cocoeval.eval["precision"][:, :, :, 0, -1]  # (T, R, K): area all, 100 detections
    with_gt = [k for k, c in enumerate(evaluation.cocoeval.params.catIds) if int(c) in evaluation.matches]
    if not with_gt:
        raise ValueError(f"{annotations}: no ground-truth box to score against")
    per_class = precision[:, :, with_gt].mean(axis=1)  # (T, K'): every class with ground truth has a full curve
    names = [evaluation.cat_names[int(evaluation.cocoeval.params.catIds[k])] for k in with_gt]
    return {"iou": [round(float(t), 2) for t in evaluation.cocoeval.params.iouThrs],
            "AP": per_class.mean(axis=1).tolist(),
            "class_AP": {n: per_class[:, j].tolist() for j, n in enumerate(names)},
            "rho": rho if math.isfinite(rho := float(evaluation.metrics["rho"])) else None}


def collect(compare: Path, setups: list[str]) -> tuple[dict[str, list[dict]], list[str]]:
    """({setup: [one ap_by_iou dict per finished best-lr run, with "run"]}, [runs left out, with why])."""
    table: dict[str, list[dict]] = {}
    left_out: list[str] = []
    results_path = compare / "results.json"
    results = json.loads(results_path.read_text())["setups"] if results_path.is_file() else {}
    for setup in setups:
        runs, skipped = table_runs(compare, setup, results)
        left_out += skipped
        for run_dir in runs:
            try:
                found = run_detections(run_dir)
                scored = ap_by_iou(*found) if found is not None else None
            except (OSError, ValueError, KeyError, TypeError) as err:  # a broken run folder: named, not a traceback
                left_out.append(f"{setup}/{run_dir.name} ({type(err).__name__}: {err})")
                continue
            if scored is None:
                left_out.append(f"{setup}/{run_dir.name} (no saved val detections)")
                continue
            table.setdefault(setup, []).append({"run": run_dir.name, **scored})
    return table, left_out


def summarise(runs: list[dict]) -> dict:
    """Mean and sample std (None for one run) over runs, per IoU threshold, per class, and of rho."""
    ap = [report.mean_std(column) for column in zip(*(r["AP"] for r in runs))]
    classes = runs[0]["class_AP"]
    rho, rho_std = report.mean_std([r["rho"] for r in runs if r["rho"] is not None])
    return {"runs": [r["run"] for r in runs], "iou": runs[0]["iou"], "AP": [m for m, _ in ap],
            "AP_std": [s for _, s in ap],
            "class_AP": {c: [report.mean_std(col)[0] for col in zip(*(r["class_AP"][c] for r in runs))]
                         for c in classes},
            "rho": rho if math.isfinite(rho) else None, "rho_std": rho_std}


def markdown(summary: dict[str, dict], left_out: list[str], compare: Path) -> str:
    """ap_by_iou.md: AP per IoU threshold (mean ± std), rho, and each class's AP at every threshold."""
    iou = next(iter(summary.values()))["iou"]
    head = "| setup | runs | " + " | ".join(f"AP{round(t * 100)}" for t in iou) + " | rho |"
    lines = [f"# AP by IoU threshold: `{compare}`", "",
             "Final weights' val detections, each run scored again (pycocotools, area all, 100 detections per "
             "image); mean ± sample std over runs. rho: Spearman correlation of scores and IoUs of the true "
             "positives at IoU 0.5, mean over classes.", "", head, "|---" * (len(iou) + 3) + "|"]
    for setup, row in summary.items():
        cells = [report.format_mean_std(m, s) for m, s in zip(row["AP"], row["AP_std"])]
        cells.append(report.format_mean_std(row["rho"], row["rho_std"]))
        lines.append(f"| {setup} | {len(row['runs'])} | " + " | ".join(cells) + " |")
    for name in next(iter(summary.values()))["class_AP"]:
        lines += ["", f"{name}: AP per IoU threshold (mean over runs)", "",
                  "| setup | " + " | ".join(f"AP{round(t * 100)}" for t in iou) + " |", "|---" * (len(iou) + 1) + "|"]
        for setup, row in summary.items():
            lines.append(f"| {setup} | " + " | ".join(f"{v:.3f}" for v in row["class_AP"][name]) + " |")
    if left_out:
        lines += ["", "Left out: " + ", ".join(left_out) + "."]
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, dict], path: Path) -> None:
    """ap_by_iou.png: AP against the IoU threshold (all classes, then one panel per class), mean over runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(next(iter(summary.values()))["class_AP"])
    fig, axes = plt.subplots(1, 1 + len(classes), figsize=(4 * (1 + len(classes)), 3.6), squeeze=False)
    for setup, row in summary.items():
        std = np.array([s if s is not None else 0.0 for s in row["AP_std"]])
        line, = axes[0, 0].plot(row["iou"], row["AP"], marker="o", ms=3, label=f"{setup} ({len(row['runs'])})")
        axes[0, 0].fill_between(row["iou"], np.array(row["AP"]) - std, np.array(row["AP"]) + std,
                                color=line.get_color(), alpha=0.15)
        for ax, name in zip(axes[0, 1:], classes):
            ax.plot(row["iou"], row["class_AP"][name], marker="o", ms=3, color=line.get_color(), label=setup)
    for ax, title in zip(axes[0], ["all classes (± std over runs)", *classes]):
        ax.set(title=title, xlabel="IoU threshold", ylabel="AP")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    table, left_out = collect(args.compare, args.setups)
    for item in left_out:
        print(f"[ap_by_iou] left out {item}")
    if not table:
        print(f"[ap_by_iou] no finished run with saved val detections under {args.compare}/runs", file=sys.stderr)
        return 1
    summary = {setup: summarise(runs) for setup, runs in table.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ap_by_iou.json").write_text(json.dumps({"summary": summary, "runs": table,
                                                         "left_out": left_out}, indent=1) + "\n")
    (args.out / "ap_by_iou.md").write_text(markdown(summary, left_out, args.compare))
    plot(summary, args.out / "ap_by_iou.png")
    print((args.out / "ap_by_iou.md").read_text())
    print(f"[ap_by_iou] {args.out / 'ap_by_iou.md'}, {args.out / 'ap_by_iou.json'}, {args.out / 'ap_by_iou.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
