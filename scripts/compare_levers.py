#!/usr/bin/env python
"""One lever at a time: reruns the loss comparison with one setting changed, for the levers issue 9 lists.

Every lever is a `scripts/compare_losses.py` run of its own (`<out>/<lever>/`: results.json, results.md, curves.png)
with the same setups, seeds, data and budget as the `baseline` lever and one change: a `--set` override, a factor on
the lr or on the iteration budget. A lever that does not apply to a setup (δ or the ranking group for focal loss,
the SB period without self-balance, the head prior for the torchvision row) skips that setup. There is no lr grid
here: every lever runs at `--lr` times its factor, one lr for all setups (for setups whose best lrs differ, run one
invocation per lr, each with its own `--out`). The baseline budget is `--iters N` for every setup, `--iters
setup=N,...` per setup, or `--iters-from <compare out>/calibration.json`: each setup's calibrated iterations, so the
levers run at the equal wall time of a `compare_losses.py --minutes` table (levers that change the cost of an
iteration excepted; the calibration must come from the same data, configs and device). `<out>/levers.md` and
`levers.json` collect mean ± std over seeds of AP, AP75 and oLRP per lever and setup, and the AP change against
the baseline.

Example (GPU): python scripts/compare_levers.py --data datasets/bccd --lr 0.0005 --iters 800 --device cuda
Example (CPU, 32 minutes a run): python scripts/compare_levers.py --data datasets/bccd --lr 0.0005 \
    --iters-from runs/compare/bccd_cpu32/calibration.json --out runs/levers/bccd_cpu32
Resumable like compare_losses.py (finished runs are skipped); `--dry-run` prints the commands; `--report` writes
the table of the finished runs and starts none (it takes the budget all the same, for the tables' headers). Each
lever's results.json keeps every sitting's setups, but levers.md holds one sitting's levers and setups: a sitting
that drops cells of the earlier levers.md names them.
`--baseline-from <compare out>` takes the baseline's runs from a finished `compare_losses.py` table at the same lr,
seeds, budget and config (linked, not retrained), so the levers are compared with the very runs of that table; a
run whose config.yaml is not the one the baseline trains is refused (its name, folder and evaluation interval may
differ, and options added since it ran may be missing while the baseline leaves them at their schema defaults).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_losses  # noqa: E402
import compare_sittings as sittings  # noqa: E402
import yaml  # noqa: E402
from compare_report import format_mean_std  # noqa: E402
from sweep import REPO_ROOT, _repo_module, repo_relative  # noqa: E402

RANKING = ("alrp", "aploss")  # setups whose names contain one of these rank (δ, ranking group)
SELF_BALANCED = ("_sb",)  # setup names containing this use self-balance
OURS = ("alrp", "aploss", "focal")  # our detector (the torchvision row has its own head and ignores model.head)


@dataclass(frozen=True)
class Lever:
    """One change against the baseline."""

    overrides: tuple[str, ...] = ()
    lr_factor: float = 1.0
    lr: float | None = None  # an absolute lr instead of --lr × lr_factor (another optimiser)
    iters_factor: float = 1.0
    applies: tuple[str, ...] = field(default_factory=tuple)  # setup-name fragments it applies to (empty: all)

    def applies_to(self, setup: str) -> bool:
        return not self.applies or any(a in setup for a in self.applies)


LEVERS: dict[str, Lever] = {
    "baseline": Lever(),
    "lr_x0.5": Lever(lr_factor=0.5),
    "lr_x2": Lever(lr_factor=2.0),
    "delta_0.5": Lever(("loss.delta=0.5",), applies=RANKING),
    "delta_2": Lever(("loss.delta=2.0",), applies=RANKING),
    "warmup_0": Lever(("train.warmup_iters=0",)),
    "warmup_200": Lever(("train.warmup_iters=200",)),
    "rank_group_1": Lever(("loss.rank_group=1",), applies=RANKING),  # each image ranked alone
    "rank_per_class": Lever(("loss.rank_per_class=true",), applies=RANKING),  # a diagnostic, not the paper's loss
    "prior_0.1": Lever(("model.head.prior_prob=0.1",), applies=OURS),
    # SGD with the releases' momentum and weight decay; RetinaNet's lr 0.01 at batch 16, linearly scaled to batch 4
    "sgd": Lever(("train.optimizer=sgd", "train.momentum=0.9", "train.weight_decay=0.0001"), lr=0.0025),
    "schedule_x2": Lever(iters_factor=2.0),
    "sb_period_100": Lever(("loss.sb_period_iters=100",), applies=SELF_BALANCED),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="COCO-layout root with train and val splits")
    p.add_argument("--prefix", default="bccd_", help="config prefix in configs/small (default %(default)s)")
    p.add_argument("--setups", default="alrp_giou_sb,focal_sl1", help="comma-separated (default %(default)s)")
    p.add_argument("--levers", default=",".join(LEVERS), help="comma-separated (default: all): " + ", ".join(LEVERS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--lr", type=float, required=True, help="the baseline lr of every setup")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--iters", help="the baseline iterations per run: N for every setup, or setup=N,...")
    budget.add_argument("--iters-from", type=Path, metavar="CALIBRATION_JSON",
                        help="each setup's iterations from a compare_losses.py --minutes calibration.json")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="default runs/levers/<data folder name>")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="extra config overrides for every run")
    p.add_argument("--baseline-from", type=Path, metavar="COMPARE_OUT",
                   help="link the baseline's runs from this compare_losses.py folder instead of training them")
    p.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    p.add_argument("--report", action="store_true", help="write the table of the finished runs; start no run")
    p.add_argument("--keep-going", action="store_true", help="go on with the other levers after a failure")
    args = p.parse_args(argv)
    args.data = str(repo_relative(Path(args.data)))
    args.setups = [s for s in args.setups.split(",") if s]
    configs = compare_losses.setup_configs(compare_losses.CONFIG_DIR, args.prefix, args.setups)
    missing = [str(c) for c in configs.values() if not (REPO_ROOT / c).is_file()]
    if missing:
        p.error("setup config(s) not found: " + ", ".join(missing))
    args.levers = [x for x in args.levers.split(",") if x]
    unknown = [x for x in args.levers if x not in LEVERS]
    if unknown:
        p.error(f"unknown lever(s) {', '.join(unknown)}; known: {', '.join(LEVERS)}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        p.error("--lr must be positive")
    try:
        if args.iters is not None:
            args.iters = compare_losses.parse_iters(args.iters, args.setups)
        else:
            args.iters = calibrated_iters(args.iters_from, args.setups, args.data, args.device)
    except (ValueError, RuntimeError) as err:
        p.error(f"--iters: {err}" if args.iters is not None else str(err))
    args.out = repo_relative(args.out or Path("runs") / "levers" / Path(args.data).name)
    if args.baseline_from is not None:
        if args.overrides:
            p.error("--baseline-from cannot be combined with --set: the linked runs were trained without it")
        args.baseline_from = repo_relative(args.baseline_from)
        if "baseline" not in args.levers:
            args.levers.insert(0, "baseline")
    return args


def baseline_links(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """(table run, link in `<out>/baseline/runs/`) per setup and seed of the --baseline-from table, after checking
    that each run finished on this data and device at this lr, seed and budget, with the config the baseline lever
    trains (its `--prefix` config file with the settings compare_levers passes compare_losses.py: its default batch
    size and splits, no `--set`); raises ValueError (one line) on the first that did not, or when the link's place
    is taken by anything but that same link."""
    baseline = compare_losses.parse_args(lever_argv(args, "baseline"))
    config_module = _repo_module("training.config")
    flatten = _repo_module("training.resume_check").flatten_config
    defaults = flatten(config_module.config_to_dict(config_module.Config()))
    links = []
    for setup in args.setups:
        for seed in (int(x) for x in args.seeds.split(",") if x):
            name = compare_losses.Run(setup, args.lr, seed, args.iters[setup], tuning=False).name
            src = REPO_ROOT / args.baseline_from / "runs" / setup / name
            try:
                result = json.loads((src / compare_losses.RESULT_FILE).read_text())
                config = yaml.safe_load((src / "config.yaml").read_text())
                ran = compare_losses.calibration_source(config["data"]["root"], config["device"])
            except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError):
                raise ValueError(f"--baseline-from: no finished run of {setup} at lr {args.lr:g}, seed {seed} in "
                                 f"{args.baseline_from} ({src} lacks its result or config)") from None
            wanted = (args.lr, seed, args.iters[setup], compare_losses.calibration_source(args.data, args.device))
            if (result.get("lr"), result.get("seed"), result.get("iterations"), ran) != wanted:
                raise ValueError(f"--baseline-from: {src} ran lr {result.get('lr')}, seed {result.get('seed')}, "
                                 f"{result.get('iterations')} iterations on {ran['data']} ({ran['device']}); the "
                                 f"levers use lr {args.lr:g}, seed {seed}, {args.iters[setup]} iterations on "
                                 f"{wanted[3]['data']} ({args.device})")
            changed = config_change(config, baseline_config(baseline, setup, seed), defaults)
            if changed:
                raise ValueError(f"--baseline-from: {src} was trained with {changed}; the baseline trains "
                                 f"{baseline.configs[setup]} with compare_losses.py's default batch size and splits "
                                 f"and no --set, so this run is not the levers' baseline")
            dst = REPO_ROOT / args.out / "baseline" / "runs" / setup / name
            if (dst.exists() or dst.is_symlink()) and not (dst.is_symlink() and dst.resolve() == src.resolve()):
                raise ValueError(f"--baseline-from: {dst} exists and is not a link to {src}; move it away first")
            links.append((src, dst))
    return links


# Keys of config.yaml that may differ between a linked run and the baseline: where it ran (data and device are
# checked through calibration_source) and how often it evaluated (the curve's density, not the training).
UNCHECKED_KEYS = {"name", "output_dir", "data.root", "device", "train.eval_interval"}


def baseline_config(baseline: argparse.Namespace, setup: str, seed: int) -> dict:
    """The config dict, resolved as train.py saves it in config.yaml, of the run that compare_losses.py, called with
    the baseline lever's arguments `baseline` (its parse_args result), trains for `setup` and `seed`."""
    run = compare_losses.Run(setup, baseline.lrs[0], seed, baseline.iters[setup], tuning=False)
    config_module = _repo_module("training.config")
    cfg = config_module.load_config(REPO_ROOT / baseline.configs[setup], compare_losses.overrides(baseline, run))
    return config_module.config_to_dict(cfg)


def config_change(ran: dict, wanted: dict, defaults: dict) -> str | None:
    """Returns "key: what the run had (what the baseline has)" for the first checked key where a run's config differs
    from `wanted` (in `wanted`'s order, then the keys only the run has), else None. `defaults` is the flattened
    schema default (`training.config.Config()`, not a `_base_` file): a key the run lacks is an option added after it
    ran and passes only when the baseline leaves it at that default (the old behaviour); a key only the run has is an
    option that no longer exists, so the run cannot be the baseline."""
    flatten = _repo_module("training.resume_check").flatten_config
    flat_ran, flat_wanted = flatten(ran), flatten(wanted)
    for key in [*flat_wanted, *(k for k in flat_ran if k not in flat_wanted)]:
        if key in UNCHECKED_KEYS:
            continue
        if key not in flat_wanted:
            return f"{key}: {flat_ran[key]!r} (an option that no longer exists)"
        if key not in flat_ran:
            if flat_wanted[key] != defaults.get(key):
                return (f"{key}: not set, the run predates the option (the baseline has {flat_wanted[key]!r}, "
                        f"not its default {defaults.get(key)!r})")
        elif flat_ran[key] != flat_wanted[key]:
            return f"{key}: {flat_ran[key]!r} (the baseline has {flat_wanted[key]!r})"
    return None


def link_baseline(links: list[tuple[Path, Path]]) -> None:
    """Creates the links baseline_links() checked (those already in place are kept)."""
    for src, dst in links:
        if not dst.is_symlink():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src.resolve(), target_is_directory=True)


def calibrated_iters(path: Path, setups: list[str], data: str, device: str) -> dict[str, int]:
    """{setup: iterations} from compare_losses.py's calibration.json ({setup: {"iters": N, "s_per_iter": s, "data":
    path, "device": d}}); refuses an entry measured on other data or another device."""
    try:
        calibration = json.loads(path.read_text())
        iters = {s: int(calibration[s]["iters"]) for s in setups if s in calibration}
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ValueError(f"--iters-from {path}: not a readable calibration.json ({err})") from None
    missing = [s for s in setups if s not in iters]
    if missing:
        raise ValueError(f"--iters-from {path}: no calibration for {', '.join(missing)} (run compare_losses.py "
                         f"--minutes with these setups and this --out first)")
    for setup in setups:
        compare_losses.check_calibration(path, setup, calibration[setup], data, device)
    return iters


def iters_argument(iters: dict[str, int]) -> str:
    """compare_losses.py's --iters value: "N" when every setup has N, else "setup=N,..."."""
    values = set(iters.values())
    return str(values.pop()) if len(values) == 1 else ",".join(f"{s}={n}" for s, n in iters.items())


def lever_argv(args: argparse.Namespace, name: str) -> list[str] | None:
    """compare_losses.py's arguments for one lever (None when it applies to none of the setups)."""
    lever = LEVERS[name]
    setups = [s for s in args.setups if lever.applies_to(s)]
    if not setups:
        return None
    lr = lever.lr if lever.lr is not None else args.lr * lever.lr_factor
    iters = {s: max(1, round(args.iters[s] * lever.iters_factor)) for s in setups}
    argv = ["--data", str(args.data), "--prefix", args.prefix, "--setups", ",".join(setups), "--seeds", args.seeds,
            "--lrs", repr(lr), "--iters", iters_argument(iters),
            "--device", args.device, "--out", str(args.out / name), "--keep-going"]
    sets = [*args.overrides, *lever.overrides]
    return (argv + (["--set", *sets] if sets else []) + (["--dry-run"] if args.dry_run else [])
            + (["--report"] if args.report else []))


def collect(out: Path, levers: list[str], setups: list[str]) -> dict[str, dict[str, dict]]:
    """{lever: {setup: {"AP": (mean, std), "AP75": ..., "oLRP": ..., "n": seeds}}} from each lever's results.json
    (the mean and std that compare_losses.py's aggregation wrote there)."""
    table: dict[str, dict[str, dict]] = {}
    for name in levers:
        path = out / name / "results.json"
        if not path.is_file():
            continue
        results = json.loads(path.read_text())["setups"]
        table[name] = {}
        for setup in setups:
            row = results.get(setup, {})
            if row.get("runs"):
                table[name][setup] = {k: _finite(row["mean"][k], row["std"][k]) for k in ("AP", "AP75", "oLRP")}
                table[name][setup]["n"] = len(row["runs"])
    return table


def cells_left_out(path: Path, table: dict[str, dict[str, dict]]) -> list[str]:
    """The `lever/setup` cells of an earlier levers.json (another sitting's, same --out) that `table` lacks."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(earlier, dict):
        return []
    cells = [(lever, setup) for lever, row in earlier.items() if isinstance(row, dict) for setup in row]
    return [f"{lever}/{setup}" for lever, setup in cells if setup not in table.get(lever, {})]


def _finite(mean: float | None, std: float | None) -> tuple[float | None, float | None]:
    """(mean, std) with an undefined mean as None, so levers.json stays strict JSON."""
    return (mean if mean is not None and math.isfinite(mean) else None), std


def markdown(table: dict[str, dict[str, dict]], setups: list[str], header: str) -> str:
    """One row per lever; per setup AP, AP75, oLRP (mean ± std over seeds) and ΔAP against the baseline."""
    cols = [f"{s} {k}" for s in setups for k in ("AP", "ΔAP", "AP75", "oLRP")]
    lines = [header, "", "| lever | change | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    base = table.get("baseline", {})
    for name, row in table.items():
        lever = LEVERS[name]
        change = ", ".join([*lever.overrides, *([f"lr ×{lever.lr_factor:g}"] if lever.lr_factor != 1 else []),
                            *([f"lr {lever.lr:g}"] if lever.lr is not None else []),
                            *([f"iterations ×{lever.iters_factor:g}"] if lever.iters_factor != 1 else [])]) or "–"
        cells = []
        for setup in setups:
            if setup not in row:
                cells += ["n/a"] * 4
                continue
            ap, base_ap = row[setup]["AP"][0], base.get(setup, {}).get("AP", (None,))[0]
            delta = ap - base_ap if name != "baseline" and ap is not None and base_ap is not None else math.nan
            delta_cell = f"{round(delta, 3) + 0.0:+.3f}" if math.isfinite(delta) else "–"
            cells += [format_mean_std(*row[setup]["AP"]), delta_cell,
                      format_mean_std(*row[setup]["AP75"]), format_mean_std(*row[setup]["oLRP"])]
        lines.append(f"| {name} | {change} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(REPO_ROOT)  # every path in args is now absolute or relative to the repository root
    if args.baseline_from is not None:
        try:
            links = baseline_links(args)
        except ValueError as err:
            print(f"compare_levers.py: error: {err}", file=sys.stderr)
            return 2
        if not args.dry_run:
            link_baseline(links)
    failed = 0
    for name in args.levers:
        if name == "baseline" and args.baseline_from is not None and args.dry_run:
            print(f"# baseline: {len(links)} finished run(s) of {args.baseline_from}, to be linked")
            continue
        sub = lever_argv(args, name)
        if sub is None:
            print(f"# {name}: applies to none of {args.setups}")
            continue
        print(f"# lever {name}: python scripts/compare_losses.py {' '.join(sub)}", flush=True)
        rc = compare_losses.main(sub)
        failed += rc != 0
        if rc != 0 and not args.keep_going:
            return rc
    if args.dry_run:
        return 0
    table = collect(REPO_ROOT / args.out, args.levers, args.setups)
    budget = compare_losses.format_iters(args.iters, "iterations")
    header = (f"Levers on {args.data}: baseline lr {args.lr:g}, {budget}, seeds {args.seeds}, "
              f"device {args.device}; mean ± std over seeds, final weights on val."
              + (f" Baseline: the runs of {args.baseline_from}." if args.baseline_from is not None else ""))
    with sittings.table_lock(REPO_ROOT / args.out):
        left_out = cells_left_out(REPO_ROOT / args.out / "levers.json", table)
        sittings.write_atomically(REPO_ROOT / args.out / "levers.md", markdown(table, args.setups, header))
        sittings.write_atomically(REPO_ROOT / args.out / "levers.json", json.dumps(table, indent=1) + "\n")
    print(f"[levers] {args.out / 'levers.md'}")
    if left_out:
        print(f"[levers] levers.md covers this sitting's levers and setups; no longer in it: {', '.join(left_out)} "
              "(their runs are kept; --report with every lever and setup tabulates all, training none)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
