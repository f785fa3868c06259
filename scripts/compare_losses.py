#!/usr/bin/env python
"""Compares loss setups on one COCO-layout dataset: same model, data, optimiser family and budget; an lr grid
tuned the same way for every setup; several seeds; mean ± std table and learning curves.

Setups are configs `<config-dir>/<prefix><setup>.yaml` (default `configs/small/bccd_<setup>.yaml`) that differ only
in their loss; `torchvision_retinanet` is the external reference row (scripts/train_torchvision.py). Steps:
1. budget: `--iters N` for every setup, `--iters setup=N,...` per setup, or `--minutes M`: each setup gets the
   iterations that fill M minutes at its own speed, measured by a short calibration run (stored in
   `<out>/calibration.json` with the data and device it ran on, reused by later sittings on the same ones);
2. tuning: every lr of `--lrs` on the first seed (the same grid for every setup); the best by final val AP;
3. seeds: each setup's best lr on the remaining seeds;
4. `<out>/results.json`, `<out>/results.md` (mean ± std over seeds of AP, AP50, AP75, AP90, oLRP and its
   components, s/iter, iterations and training minutes; the lr grid; per-class AP), `<out>/curves.png` (val AP
   and oLRP against iterations) and `<out>/class_curves.png` (each class's val AP against iterations).
Every run is `<out>/runs/<setup>/lr<lr>_seed<seed>`, trained by train.py and scored by eval.py (final weights, val
split). A finished run (`compare_result.json`) is skipped, one with a checkpoint resumed: the table can be built in
several sittings. A sitting with other `--setups` adds its rows to the table in `<out>`: the earlier table's other
setups are tabulated again from their finished runs when it shared this sitting's data, configs, device, seeds, lr
grid, kind of budget and overrides, and are left out, by name, when not (compare_sittings.py); sittings into one
`--out` take turns, under a lock, from reading its table to writing theirs. `--dry-run` prints the commands;
`--report` writes the table of the runs finished so far and starts none (needs no budget: the table gives each
run's iterations; a setup whose lr grid is unfinished has an empty row, best lr None; the seeds column counts each
setup's runs).

Example: python scripts/compare_losses.py --data datasets/bccd --seeds 0,1,2 --minutes 10 --out runs/compare/bccd
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_report as report  # noqa: E402
import compare_sittings as sittings  # noqa: E402
from sweep import (CHECKPOINT_MARK, METRICS_FILE, REPO_ROOT, _execute, _repo_module,  # noqa: E402
                   final_checkpoint, format_command, has_checkpoint, repo_relative)

DEFAULT_SETUPS = ("alrp_giou_sb", "alrp_iou_sb", "alrp_iou_nosb", "aploss_sl1", "focal_sl1", "focal_giou",
                  "torchvision_retinanet")
TORCHVISION = "torchvision_retinanet"
RESULT_FILE = "compare_result.json"
CONFIG_DIR = Path("configs/small")  # where the setup configs `<prefix><setup>.yaml` are (--config-dir)
WALL_FILE = "wall_seconds.txt"  # one line per sitting


@dataclass(frozen=True)
class Run:
    """One training run of the comparison."""

    setup: str
    lr: float
    seed: int
    iters: int
    tuning: bool

    @property
    def name(self) -> str:
        return f"lr{self.lr:g}_seed{self.seed}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="COCO-layout root with train and val splits")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--setups", default=",".join(DEFAULT_SETUPS), help="comma-separated (default: all six + "
                   "torchvision_retinanet)")
    p.add_argument("--config-dir", type=Path, default=CONFIG_DIR)
    p.add_argument("--prefix", default="bccd_", help="config file prefix (default %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated; the first one is the tuning seed")
    p.add_argument("--lrs", default="0.0005,0.001,0.002", help="lr grid, the same for every setup")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--iters", help="iterations per run: N for every setup, or setup=N,... for each")
    budget.add_argument("--minutes", type=float, help="training minutes per run (converted per setup)")
    p.add_argument("--calib-iters", type=int, default=10, help="iterations of the --minutes calibration run")
    p.add_argument("--evals", type=int, default=6, help="evaluations per run for the learning curves")
    p.add_argument("--batch-size", type=int, default=4, help="train.batch_size (for the epoch length)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--out", type=Path, default=None, help="default runs/compare/<data folder name>")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="extra config overrides for every run")
    p.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    p.add_argument("--report", action="store_true", help="write the table of the finished runs; start no run")
    p.add_argument("--keep-going", action="store_true", help="go on with the other runs after a failure")
    p.add_argument("--python", default=sys.executable, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.iters is None and args.minutes is None and not args.report:
        p.error("one of the arguments --iters --minutes is required")
    args.setups = [s for s in args.setups.split(",") if s]
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
        args.lrs = [float(x) for x in args.lrs.split(",") if x]
    except ValueError as err:
        p.error(f"--seeds / --lrs: {err}")
    if not args.seeds or not args.lrs or any(lr <= 0 or not math.isfinite(lr) for lr in args.lrs):
        p.error("--seeds and --lrs need at least one value; lrs must be finite and > 0")
    if args.iters is not None:
        try:
            args.iters = parse_iters(args.iters, args.setups)
        except ValueError as err:
            p.error(f"--iters: {err}")
    if args.minutes is not None and not args.minutes > 0:
        p.error("the budget must be positive")
    args.config_dir = repo_relative(args.config_dir)
    args.configs = setup_configs(args.config_dir, args.prefix, args.setups)
    missing = [str(c) for c in args.configs.values() if not (REPO_ROOT / c).is_file()]
    if missing:
        p.error("setup config(s) not found: " + ", ".join(missing))
    args.data = str(repo_relative(Path(args.data)))
    args.out = repo_relative(args.out or Path("runs") / "compare" / Path(args.data).name)
    return args


def parse_iters(text: str, setups: list[str]) -> dict[str, int]:
    """`--iters`: "N" (every setup) or "setup=N,setup=N" (each setup of `setups` named once) -> {setup: N}."""
    if "=" not in text:
        per_setup = dict.fromkeys(setups, _positive_int(text))
    else:
        pairs = [item.split("=", 1) for item in text.split(",") if item]
        per_setup = {name.strip(): _positive_int(value) for name, value in pairs}
        if len(per_setup) != len(pairs) or set(per_setup) != set(setups):
            raise ValueError(f"name each setup once ({', '.join(setups)}); got {', '.join(n for n, _ in pairs)}")
    return {s: per_setup[s] for s in setups}


def format_iters(iters: dict[str, int | None], label: str) -> str:
    """"N <label>" when every setup has N, else "<label>: setup N, ..." ("–" for a setup without a budget)."""
    values = set(iters.values())
    if len(values) == 1 and None not in values:
        return f"{values.pop()} {label}"
    return f"{label}: " + ", ".join(f"{s} {'–' if n is None else n}" for s, n in iters.items())


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number of iterations") from None
    if value < 1:
        raise ValueError(f"{value} iterations: the budget must be positive")
    return value


def iters_per_epoch(args: argparse.Namespace) -> int:
    """Training batches per epoch, from the annotation file (images with a non-crowd box; 1 if unreadable)."""
    path = REPO_ROOT / args.data / "annotations" / f"instances_{args.train_split}.json"
    try:
        coco = json.loads(path.read_text())
        with_boxes = {a["image_id"] for a in coco["annotations"] if not a.get("iscrowd")}
        return max(1, math.ceil(len(with_boxes) / args.batch_size))
    except (OSError, ValueError, KeyError, TypeError):
        return 1


def setup_configs(config_dir: Path, prefix: str, setups: list[str]) -> dict[str, Path]:
    """{setup: `<config_dir>/<prefix><setup>.yaml`}, relative to the repository root where it lies inside it."""
    return {s: repo_relative(config_dir / f"{prefix}{s}.yaml") for s in setups}


def overrides(args: argparse.Namespace, run: Run) -> list[str]:
    """The --set list of one run: data, device, seed, lr and the iteration budget (epochs never bind)."""
    eval_every = max(1, round(run.iters / iters_per_epoch(args) / max(1, args.evals)))
    return [f"data.root={args.data}", f"data.train_split={args.train_split}", f"data.val_split={args.val_split}",
            f"device={args.device}", f"seed={run.seed}", f"train.lr={run.lr}", f"train.batch_size={args.batch_size}",
            f"train.max_iters={run.iters}", f"train.epochs={run.iters}", f"train.eval_interval={eval_every}",
            *args.overrides]


def commands(args: argparse.Namespace, run: Run, run_dir: Path) -> list[list[str]]:
    """train (+ eval) commands of a run; torchvision's script trains and evaluates in one."""
    config, sets = str(args.configs[run.setup]), overrides(args, run)
    where = ["--output-dir", str(run_dir.parent), "--name", run_dir.name]
    if run.setup == TORCHVISION:
        return [[args.python, "scripts/train_torchvision.py", "--config", config, *where, "--set", *sets]]
    resume = ["--resume"] if has_checkpoint(run_dir) else []
    return [[args.python, "train.py", "--config", config, *where, "--no-progress", *resume, "--set", *sets],
            [args.python, "eval.py", "--config", config, "--checkpoint", CHECKPOINT_MARK, "--split", "val",
             "--json-out", str(run_dir / METRICS_FILE), "--set", *sets, f"output_dir={run_dir.parent}",
             f"name={run_dir.name}"]]


def summarise(run: Run, run_dir: Path) -> dict:
    """The run's compare_result.json content (from metrics.jsonl, eval_metrics.json and the sittings' wall time)."""
    records = report.read_jsonl(run_dir / "metrics.jsonl")
    iterations, seconds = report.train_time(records)
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    names = _class_names(run_dir)
    per_class = {names.get(str(k), str(k)): v.get("AP") for k, v in (metrics.get("per_class") or {}).items()}
    wall = sum(float(x) for x in (run_dir / WALL_FILE).read_text().split()) if (run_dir / WALL_FILE).is_file() else None
    return {"setup": run.setup, "lr": run.lr, "seed": run.seed, "tuning": run.tuning, "iterations": iterations,
            "train_seconds": seconds, "s_per_iter": seconds / iterations if iterations else None,
            "wall_seconds": wall, "metrics": {k: metrics.get(k) for k in report.TABLE_KEYS},
            "per_class_AP": per_class, "curve": report.curve(records),
            "class_curves": report.class_curves(records)}


def _class_names(run_dir: Path) -> dict[str, str]:
    """{category id: name} of the run's val annotation file (from its resolved config)."""
    try:
        return {str(c["id"]): c["name"] for c in json.loads(report.val_annotations(run_dir).read_text())["categories"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def run_folder(out: Path, run: Run) -> Path:
    """`<out>/runs/<setup>/lr<lr>_seed<seed>`."""
    return out / "runs" / run.setup / run.name


def finished(out: Path, run: Run) -> dict | None:
    """The run's summary when it has finished (its compare_result.json), else None; its `tuning` is its role in this
    sitting (`run.tuning`), not in the sitting that trained it, whose first seed may have been another."""
    run_dir = run_folder(out, run)
    if not (run_dir / RESULT_FILE).is_file():
        return None
    summary = {**json.loads((run_dir / RESULT_FILE).read_text()), "tuning": run.tuning}
    if "class_curves" not in summary and (run_dir / "metrics.jsonl").is_file():  # summarised before they existed
        summary["class_curves"] = report.class_curves(report.read_jsonl(run_dir / "metrics.jsonl"))
    return summary


def execute(args: argparse.Namespace, run: Run) -> dict | None:
    """Runs (or resumes, or skips) one run; returns its summary, None when it failed or in a dry run."""
    run_dir = run_folder(args.out, run)
    summary = finished(args.out, run)
    if summary is not None:
        return summary
    if args.report:
        print(f"# not finished: {run.setup} lr {run.lr:g} seed {run.seed}")
        return None
    cmds = commands(args, run, run_dir)
    if args.dry_run:
        print(f"# {run.setup} lr {run.lr:g} seed {run.seed} ({'tuning' if run.tuning else 'seed run'}, "
              f"{run.iters} iterations)")
        for cmd in cmds:
            print(format_command(cmd, run_dir))
        return None
    tic = time.perf_counter()
    for cmd in cmds:
        if CHECKPOINT_MARK in cmd:
            cmd = [str(final_checkpoint(run_dir)) if c == CHECKPOINT_MARK else c for c in cmd]
        if _execute(cmd) != 0:
            print(f"[compare] {run.setup} {run.name} failed", file=sys.stderr)
            return None
    with (run_dir / WALL_FILE).open("a") as f:
        f.write(f"{time.perf_counter() - tic:.1f}\n")
    summary = summarise(run, run_dir)
    sittings.write_atomically(run_dir / RESULT_FILE, json.dumps(summary, indent=1) + "\n")
    return summary


def calibration_source(data: str, device: str) -> dict[str, str]:
    """What a calibration entry was measured on: the dataset's resolved path and the device."""
    return {"data": str((REPO_ROOT / data).resolve()), "device": device}


def check_calibration(path: Path, setup: str, entry: dict, data: str, device: str) -> None:
    """Raises RuntimeError when the entry was measured on other data or another device (entries written before
    these were recorded carry neither and pass unchecked)."""
    for key, value in calibration_source(data, device).items():
        if key in entry and entry[key] != value:
            raise RuntimeError(f"{path}: {setup} was calibrated with {key} {entry[key]}, not {value}; "
                               f"calibrate on this {key} (compare_losses.py --minutes with a new --out)")


def budget(args: argparse.Namespace) -> dict[str, int] | None:
    """Iterations per setup: --iters, or --minutes over each setup's calibrated s/iter (None: not calibrated yet)."""
    if args.iters is not None:
        return args.iters
    path = args.out / "calibration.json"
    calib = json.loads(path.read_text()) if path.is_file() else {}
    for setup in args.setups:
        if setup in calib:
            check_calibration(path, setup, calib[setup], args.data, args.device)
            continue
        run = Run(setup, args.lrs[0], args.seeds[0], args.calib_iters, tuning=False)
        run_dir = args.out / "calibration" / setup
        cmd = commands(args, run, run_dir)[0]
        cmd = [c for c in cmd if c != "--resume"] + ["train.eval_interval=0"]
        if args.dry_run:
            print(f"# calibration of {setup} ({args.calib_iters} iterations)\n{format_command(cmd, run_dir)}")
            continue
        if _execute(cmd) != 0:
            raise RuntimeError(f"calibration of {setup} failed")
        iterations, seconds = report.train_time(report.read_jsonl(run_dir / "metrics.jsonl"))
        entry = {"s_per_iter": seconds / max(1, iterations),
                 "iters": max(1, int(args.minutes * 60 * max(1, iterations) / max(seconds, 1e-9))),
                 **calibration_source(args.data, args.device)}
        with sittings.table_lock(args.out):  # re-read: a concurrent sitting (same --out) may have added setups
            calib = {**(json.loads(path.read_text()) if path.is_file() else {}), setup: entry}
            sittings.write_atomically(path, json.dumps(calib, indent=1) + "\n")
    if any(s not in calib for s in args.setups):
        return None
    return {s: calib[s]["iters"] for s in args.setups}


def best_lr(summaries: list[dict], setup: str, lrs: list[float]) -> float | None:
    """The lr of the setup's best tuning run by final val AP; None until every lr of the grid has finished."""
    grid = [s for s in summaries if s["setup"] == setup and s["tuning"]]
    if {s["lr"] for s in grid} != set(lrs):
        return None
    scored = [s for s in grid if s["metrics"].get("AP") is not None]
    return max(scored, key=lambda s: s["metrics"]["AP"])["lr"] if scored else None


def finished_runs(args: argparse.Namespace, setup: str) -> tuple[list[dict], float | None]:
    """The summaries of a setup's finished runs in `<out>` (its lr grid on the first seed, then its best lr on the
    others) and its best lr (None until the grid has finished); starts nothing."""
    summaries = [s for lr in args.lrs if (s := finished(args.out, Run(setup, lr, args.seeds[0], 0, tuning=True)))]
    chosen = best_lr(summaries, setup, args.lrs)
    if chosen is not None:
        summaries += [s for seed in args.seeds[1:] if (s := finished(args.out, Run(setup, chosen, seed, 0, False)))]
    return summaries, chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import os

    os.chdir(REPO_ROOT)
    args.command = "python scripts/compare_losses.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    try:
        iters = dict.fromkeys(args.setups) if args.report else budget(args)  # --report starts no run
    except RuntimeError as err:
        print(f"[compare] {err}", file=sys.stderr)
        return 1
    if iters is None:
        print("# then, with the calibrated budgets: the lr grid on the first seed and the best lr on the others")
        return 0
    summaries, failed = [], 0
    for setup in args.setups:  # 1: the lr grid on the tuning seed
        for lr in args.lrs:
            s = execute(args, Run(setup, lr, args.seeds[0], iters[setup], tuning=True))
            failed += s is None and not (args.dry_run or args.report)
            summaries += [s] if s else []
            if failed and not args.keep_going:
                return 1
    chosen = {setup: best_lr(summaries, setup, args.lrs) for setup in args.setups}
    for setup in args.setups:  # 2: the best lr on the remaining seeds
        if chosen[setup] is None:
            print(f"# {setup}: seeds {args.seeds[1:]} after its lr grid has finished (best lr by val AP)")
            continue
        for seed in args.seeds[1:]:
            s = execute(args, Run(setup, chosen[setup], seed, iters[setup], tuning=False))
            failed += s is None and not (args.dry_run or args.report)
            summaries += [s] if s else []
            if failed and not args.keep_going:
                return 1
    if args.dry_run:
        for reason in earlier_table(args).left_out:
            print(f"# the table will leave out, from {args.out / 'results.json'}: {reason}")
        return 0
    with sittings.table_lock(args.out):
        write_table(args, iters, summaries, chosen, earlier_table(args))
    return 1 if failed else 0


def earlier_table(args: argparse.Namespace) -> sittings.Earlier:
    """What this sitting takes from the table already in --out."""
    return sittings.earlier_setups(args.out / "results.json", sittings.sitting_settings(args), args.setups,
                                   args.report)


def write_table(args: argparse.Namespace, iters: dict[str, int | None], summaries: list[dict],
                chosen: dict[str, float | None], earlier: sittings.Earlier) -> None:
    """results.json, results.md and the curves of this sitting's runs (`summaries`, best lrs `chosen`, budgets
    `iters`) and of the earlier table's setups it may keep, tabulated again from their runs."""
    commands, left_out = dict(earlier.commands), list(earlier.left_out)
    for setup in list(commands):
        runs, chosen[setup] = finished_runs(args, setup)
        summaries = summaries + runs
        if not runs:
            left_out.append(f"{setup} (no finished run of it in {args.out} any more)")
            del commands[setup], chosen[setup]
    order = [s for s in earlier.order if s in commands or s in args.setups]  # the earlier table's order, then new
    order += [s for s in args.setups if s not in order]
    table = report.aggregate(summaries, order, chosen)
    row_iters = {s: round(row["mean"]["iterations"]) if row["runs"] and math.isfinite(row["mean"]["iterations"])
                 else None for s, row in table.items()}
    minutes = earlier.minutes
    if args.report:
        iters = row_iters
        unit = "the finished runs (--report), " + format_iters(iters, "iterations per run")
    else:
        iters = {s: iters[s] if s in args.setups else row_iters[s] for s in order}
        unit = (f"{minutes:g} training minutes ({format_iters(iters, 'iterations')})" if minutes is not None
                else format_iters(iters, "iterations"))
    settings = {**sittings.sitting_settings(args), "minutes": minutes, "budget": unit, "command": args.command,
                "setups": order, "iterations": iters, "commands": {**commands, **dict.fromkeys(args.setups,
                                                                                              args.command)},
                "left_out": left_out}
    args.out.mkdir(parents=True, exist_ok=True)
    strict = _repo_module("alrp.metrics.report").metrics_to_json({"settings": settings, "setups": table})  # NaN: null
    sittings.write_atomically(args.out / "results.json", json.dumps(strict, indent=1, allow_nan=False) + "\n")
    sittings.write_atomically(args.out / "results.md", report.markdown(table, settings))
    report.plot_curves(table, args.out / "curves.png")
    figures = [args.out / "curves.png"]
    if report.plot_class_curves(table, args.out / "class_curves.png"):
        figures.append(args.out / "class_curves.png")
    print(f"[compare] {args.out / 'results.md'}, {args.out / 'results.json'}, " + ", ".join(map(str, figures)))
    for reason in left_out:
        print(f"[compare] left out of the table, from the earlier {args.out / 'results.json'}: {reason}")


if __name__ == "__main__":
    sys.exit(main())
