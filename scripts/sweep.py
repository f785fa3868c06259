#!/usr/bin/env python
"""Run a list of experiment configs one after another: train, then evaluate into the run folder.

Used by the per-table wrappers (`scripts/ablation_table2.sh`, ...). For every config the run folder is
`OUTPUT_DIR/<config name>`; a run whose `eval_metrics.json` exists is skipped, a run with checkpoints but no
metrics is resumed (`train.py --resume`). Modes:

* default: executes `torchrun --nproc_per_node=GPUS train.py ...` then `python eval.py ... --json-out`;
* `--dry-run`: prints those commands (e.g. to paste into a cluster job) and runs nothing;
* `--smoke`: a few CPU iterations per config on the demo dataset (`datasets/trees`) with tiny settings, single
  process; CI uses it to check that every experiment of a table still builds and trains.

Example: `python scripts/sweep.py configs/table2/aploss.yaml configs/table2/alrp_giou_sb.yaml --gpus 8 --dry-run`.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
METRICS_FILE = "eval_metrics.json"  # eval.py --json-out (train.py's own log is metrics.jsonl)
DEFAULT_SMOKE_DATA = "datasets/trees"
CHECKPOINT_MARK = "@LATEST_CHECKPOINT@"  # replaced by the newest checkpoint once training has run

# Tiny settings for `--smoke`: a small GroupNorm ResNet-18 detector on 128² inputs, 2 iterations, CPU.
SMOKE_OVERRIDES: tuple[str, ...] = (
    "device=cpu",
    "model.backbone.name=resnet18",
    "model.backbone.norm=gn",
    "model.backbone.pretrained=null",
    "model.backbone.frozen_stages=0",
    "model.backbone.dcn_stages=[]",  # ResNet-18 has no bottlenecks to deform
    "model.fpn.channels=64",
    "model.head.channels=64",
    "model.head.num_convs=1",
    "data.train_size=128",
    "data.eval_short_side=128",
    "data.eval_max_size=128",
    "data.train_split=train",  # the demo dataset's split names
    "data.val_split=val",
    "data.num_workers=0",
    "train.batch_size=2",
    "loss.rank_group=null",  # rank the smoke batch's images together
    "train.epochs=1",
    "train.max_iters=2",
    "train.warmup_iters=1",
    "train.log_interval=1",
    "train.eval_interval=0",  # the sweep evaluates after training
    "train.amp=false",
    "eval.batch_size=2",
)


@dataclass(frozen=True)
class RunPlan:
    """What the sweep does for one config: the commands to run (train may be None when only eval is left)."""

    config: Path
    name: str
    run_dir: Path
    status: str  # "done" | "new" | "resume"
    train_cmd: list[str] | None
    eval_cmd: list[str] | None


class SweepConfigError(RuntimeError):
    """A config of the sweep does not load (with the sweep's overrides): found before any run starts."""


def _repo_module(name: str):
    """Imports a module of this repository (e.g. `training.config`) without leaving the root on `sys.path`."""
    sys.path.insert(0, str(REPO_ROOT))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def config_name(config: Path, overrides: list[str]) -> str:
    """The run name of a config (its `name`, default the file stem), checking that it loads with `overrides`."""
    config_module = _repo_module("training.config")
    try:
        return str(config_module.load_config(config, overrides).name or config.stem)
    except config_module.ConfigError as err:
        raise SweepConfigError(f"config error: {err}") from None


def has_checkpoint(run_dir: Path) -> bool:
    """Whether train.py left a checkpoint in the run folder (then the sweep resumes instead of restarting)."""
    return (run_dir / "checkpoints" / "latest").is_file() or any((run_dir / "checkpoints").glob("*.pth"))


def final_checkpoint(run_dir: Path) -> Path:
    """The newest checkpoint of a finished run (`checkpoints/latest` names it), as train.py's manager finds it."""
    latest = _repo_module("training.checkpoint").find_latest(run_dir)
    if latest is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}/checkpoints after training")
    return latest


def checkpoint_placeholder(run_dir: Path) -> str:
    """Shell text naming the newest checkpoint once training ran (for printed commands)."""
    ckpt_dir = shlex.quote(str(run_dir / "checkpoints"))
    return f'{ckpt_dir}/"$(cat {ckpt_dir}/latest)"'


def _overrides_args(overrides: list[str]) -> list[str]:
    return ["--set", *overrides] if overrides else []


def plan_run(config: Path, output_dir: Path, overrides: list[str], gpus: int, launcher: str,
             python: str) -> RunPlan:
    """Decides what to do for one config given the state of its run folder."""
    name = config_name(config, overrides)
    run_dir = output_dir / name
    if (run_dir / METRICS_FILE).is_file():
        return RunPlan(config, name, run_dir, "done", None, None)
    resume = has_checkpoint(run_dir)
    if launcher == "torchrun":
        launch = ["torchrun", f"--nproc_per_node={gpus}"]
    else:
        launch = [python]
    train_cmd = [*launch, "train.py", "--config", str(config), "--output-dir", str(output_dir),
                 *(["--resume"] if resume else []), *_overrides_args(overrides)]
    # eval.py writes its detections under the config's run folder: point output_dir at the sweep's.
    eval_cmd = [python, "eval.py", "--config", str(config), "--checkpoint", CHECKPOINT_MARK,
                "--json-out", str(run_dir / METRICS_FILE), "--set", *overrides, f"output_dir={output_dir}"]
    return RunPlan(config, name, run_dir, "resume" if resume else "new", train_cmd, eval_cmd)


def _with_checkpoint(cmd: list[str], run_dir: Path) -> list[str]:
    return [str(final_checkpoint(run_dir)) if c == CHECKPOINT_MARK else c for c in cmd]


def format_command(cmd: list[str], run_dir: Path) -> str:
    """The command as a shell line; the eval checkpoint is read from `checkpoints/latest` when it runs."""
    line = shlex.join(["python" if c == sys.executable else c for c in cmd])
    return line.replace(CHECKPOINT_MARK, checkpoint_placeholder(run_dir)) if CHECKPOINT_MARK in cmd else line


def _execute(cmd: list[str]) -> int:
    if cmd[0] == "torchrun" and shutil.which("torchrun") is None:
        cmd = [sys.executable, "-m", "torch.distributed.run", *cmd[1:]]
    print("+ " + shlex.join(cmd), flush=True)
    return subprocess.call(cmd)


def repo_relative(path: Path) -> Path:
    """`path` (relative to the caller's cwd) made relative to the repository root when inside it, else absolute."""
    absolute = path if path.is_absolute() else Path.cwd() / path
    try:
        return absolute.resolve().relative_to(REPO_ROOT)
    except ValueError:
        return absolute.resolve()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="+", type=Path, help="experiment YAML files, run in this order")
    p.add_argument("--sweep", default="sweep", help="sweep name: default output folder runs/<sweep>")
    p.add_argument("--output-dir", type=Path, default=None,
                   help="parent of the run folders (default runs/<sweep>, runs/smoke/<sweep> with --smoke)")
    p.add_argument("--gpus", type=int, default=int(os.environ.get("GPUS", "1")),
                   help="processes per node for torchrun (default $GPUS or 1)")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="extra config overrides for every run, e.g. data.root=/data/coco (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    p.add_argument("--smoke", action="store_true", help="tiny CPU run of each config on the demo dataset")
    p.add_argument("--smoke-data", default=DEFAULT_SMOKE_DATA, help="data root for --smoke (default %(default)s)")
    p.add_argument("--keep-going", action="store_true", help="continue with the next config after a failure")
    p.add_argument("--python", default=sys.executable, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.gpus < 1:
        p.error(f"--gpus must be >= 1, got {args.gpus}")
    missing = [str(c) for c in args.configs if not c.is_file()]
    if missing:
        p.error("config file(s) not found: " + ", ".join(missing))
    # Every path is made repo-relative: the commands run from the repository root (train.py, eval.py live there).
    args.configs = [repo_relative(c) for c in args.configs]
    if args.output_dir is not None:
        args.output_dir = repo_relative(args.output_dir)
    args.smoke_data = str(repo_relative(Path(args.smoke_data)))
    return args


def build_plans(args: argparse.Namespace) -> list[RunPlan]:
    """One plan per config, with smoke settings and user overrides applied (user overrides win)."""
    overrides = list(args.overrides)
    if args.smoke:
        overrides = [*SMOKE_OVERRIDES, f"data.root={args.smoke_data}", *overrides]
        output_dir = args.output_dir or Path("runs") / "smoke" / args.sweep
        launcher = "python"
    else:
        output_dir = args.output_dir or Path("runs") / args.sweep
        launcher = "torchrun"
    return [plan_run(c, output_dir, overrides, args.gpus, launcher, args.python) for c in args.configs]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(REPO_ROOT)
    if args.smoke and not args.dry_run and not Path(args.smoke_data).exists():
        print(f"[sweep] smoke data {args.smoke_data} not found: run `python scripts/prepare_demo_data.py` "
              "first or pass --smoke-data", file=sys.stderr)
        return 2
    try:
        plans = build_plans(args)  # loads every config first: a typo fails now, not after days of training
    except SweepConfigError as err:
        print(f"[sweep] {err}", file=sys.stderr)
        return 2
    failed: list[str] = []
    for plan in plans:
        if plan.status == "done":
            print(f"# {plan.name}: done ({plan.run_dir / METRICS_FILE} exists), skipped", flush=True)
            continue
        if args.dry_run:
            print(f"# {plan.name} ({plan.status})")
            print(format_command(plan.train_cmd, plan.run_dir))
            print(format_command(plan.eval_cmd, plan.run_dir), flush=True)
            continue
        print(f"[sweep] {plan.name}: {plan.status} -> {plan.run_dir}", flush=True)
        rc = _execute(plan.train_cmd)
        if rc == 0:
            try:
                rc = _execute(_with_checkpoint(plan.eval_cmd, plan.run_dir))
            except FileNotFoundError as err:
                print(f"[sweep] {err}", file=sys.stderr)
                rc = 1
        if rc != 0:
            print(f"[sweep] {plan.name} ({plan.config}) failed with exit code {rc}", file=sys.stderr)
            failed.append(plan.name)
            if not args.keep_going:
                return rc
    if failed:
        print("[sweep] failed runs: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
