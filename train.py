"""Train a detector: ``python train.py --config configs/table2/alrp_giou_sb.yaml [--set train.lr=0.004 ...] [--resume]``.

Multi-GPU / multi-process: ``torchrun --nproc_per_node=8 train.py --config ...`` (``train.batch_size`` is the total
over all processes). The run folder is ``output_dir/name`` (``name`` defaults to the config file's stem).
"""
from __future__ import annotations

import argparse
import sys

from training.config import ConfigError, load_config  # light (yaml + the section dataclasses): fast config errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML (configs/*.yaml)")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. --set train.lr=0.004 data.root=/coco")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint of the run folder (fresh start if there is none)")
    parser.add_argument("--output-dir", help="parent folder of the run folder (same as --set output_dir=...)")
    parser.add_argument("--name", help="run folder name (same as --set name=...; default: the config's stem)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars (logs and JSON lines only)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    if args.name:
        overrides.append(f"name={args.name}")
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    # torch, data and models load only once the config is known to be valid
    from data.errors import DatasetError, error_message
    from models.backbone import PretrainedWeightsError
    from training import distributed as dist_utils
    from training.checkpoint import CheckpointError
    from training.logging import get_logger
    from training.loop import NonFiniteLossError
    from training.run_folder import RunFolderError
    from training.trainer import SetupError, Trainer

    try:
        summary = Trainer(cfg, resume=args.resume, show_progress=not args.no_progress).fit()
    except (SetupError, dist_utils.DeviceUnavailableError, PretrainedWeightsError) as err:
        get_logger("train").error("config error: %s", err)
        return 2
    except (NonFiniteLossError, CheckpointError, FileExistsError, DatasetError, RunFolderError) as err:
        get_logger("train").error("%s", error_message(err))
        return 1
    finally:
        dist_utils.cleanup()
    best = (f"best AP {summary['best_ap']:.4f} (epoch {summary['best_epoch']})" if summary["best_epoch"] >= 0
            else "no evaluation run")
    get_logger("train").info("done: %d epochs, %d iterations; %s; last checkpoint %s",
                             summary["epoch"], summary["iteration"], best, summary["checkpoint"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
