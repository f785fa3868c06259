"""Evaluate detections: COCO AP/AR, oLRP (+ components, per class, thresholds) and rho.

Two modes:
    python eval.py --gt ann.json --detections results.json [--json-out m.json] [--plots DIR]
                   [--visualize N --images DIR]
    python eval.py --config C.yaml --checkpoint K.pth [--split val] [--json-out m.json] [--plots DIR]
                   [--visualize N] [--set key=value ...]
Missing or malformed inputs print one error line naming the file and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from training.config import ConfigError, load_config
from alrp.metrics import EvaluationInputError, format_metrics, load_gt, metrics_to_json, compute_evaluation
from alrp.metrics.coco import read_results
from alrp.metrics.evaluation import Evaluation

LOG = logging.getLogger("eval")


class UsageError(Exception):
    """A user-facing problem (exit status 2)."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    files = p.add_argument_group("mode 1: evaluate a COCO results file")
    files.add_argument("--gt", type=Path, help="COCO ground-truth annotation JSON")
    files.add_argument("--detections", type=Path, help="COCO results JSON (list of image_id/category_id/bbox/score)")
    files.add_argument("--images", type=Path, help="image folder (file_name of the GT images), for --visualize")
    model = p.add_argument_group("mode 2: run a trained detector")
    model.add_argument("--config", type=Path, help="experiment YAML")
    model.add_argument("--checkpoint", type=Path, help="checkpoint file (its 'model' state dict is loaded)")
    model.add_argument("--split", choices=("val", "train"), help="dataset split (default: eval.split of the config)")
    model.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                       help="config overrides, e.g. data.root=/coco (repeatable)")
    p.add_argument("--json-out", type=Path, help="write the metrics JSON here")
    p.add_argument("--plots", type=Path, metavar="DIR", help="write PR and LRP-vs-threshold curves (PNG) here")
    p.add_argument("--visualize", type=int, default=0, metavar="N", help="draw N images with GT and detections")
    p.add_argument("--vis-dir", type=Path, help="where --visualize writes (default: PLOTS DIR or ./vis)")
    args = p.parse_args(argv)
    mode1, mode2 = args.gt or args.detections, args.config or args.checkpoint
    if bool(mode1) == bool(mode2):
        p.error("give either --gt and --detections, or --config and --checkpoint")
    if mode1 and not (args.gt and args.detections):
        p.error("mode 1 needs both --gt and --detections")
    if mode2 and not (args.config and args.checkpoint):
        p.error("mode 2 needs both --config and --checkpoint")
    if args.visualize < 0:
        p.error("--visualize N needs N >= 0")
    if mode1 and args.visualize and not args.images:
        p.error("--visualize in mode 1 needs --images DIR (the folder of the ground-truth images)")
    return args


def _evaluation_of_files(args: argparse.Namespace) -> tuple[Evaluation, list[dict], Callable[[int], Path] | None]:
    coco_gt = load_gt(args.gt)
    results, source = read_results(args.detections)
    ev = compute_evaluation(coco_gt, results, source)
    image_path = None
    if args.images:
        if not args.images.is_dir():
            raise FileNotFoundError(f"image folder not found: {args.images}")
        image_path = lambda image_id: args.images / coco_gt.imgs[image_id]["file_name"]  # noqa: E731
    return ev, results, image_path


def _evaluation_of_checkpoint(args: argparse.Namespace) -> tuple[Evaluation, list[dict], Callable[[int], Path] | None]:
    from training import inference
    from training.build import build_model, build_split
    from training.checkpoint import CheckpointError, load_checkpoint
    from training.distributed import DeviceUnavailableError, resolve_device
    from data.errors import DatasetError, error_message

    cfg = load_config(args.config, args.set)
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    split = args.split or cfg.eval.split
    try:
        device = resolve_device(cfg.device)
        dataset, loader = build_split(cfg, split, train=False, batch_size=cfg.eval.batch_size)
        state = load_checkpoint(args.checkpoint, map_location="cpu")
    except (DatasetError, CheckpointError, DeviceUnavailableError) as err:
        raise UsageError(str(err)) from None
    model = build_model(cfg, dataset.num_classes, device, pretrained=False)  # the checkpoint holds every weight
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:  # shapes/keys differ: the checkpoint is from another model config
        raise UsageError(f"{args.checkpoint}: does not fit the model of {args.config}: {err}") from None
    try:
        results = inference.predict_coco_results(model, loader, device)
    except DatasetError as err:  # an unreadable image (data.on_bad_image: error)
        raise UsageError(error_message(err)) from None
    out = cfg.run_dir / "eval" / f"{args.checkpoint.stem}_{split}_results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results))
    LOG.info("detections written to %s", out)
    if args.plots is None and cfg.eval.plots:
        args.plots = cfg.run_dir / "eval" / f"plots_{split}"
    image_path = lambda image_id: Path(dataset.img_dir) / dataset.coco.imgs[image_id]["file_name"]  # noqa: E731
    return compute_evaluation(dataset.coco, results), results, image_path


def _write_outputs(args: argparse.Namespace, ev: Evaluation, results: list[dict],
                   image_path: Callable[[int], Path] | None) -> None:
    from alrp.metrics.plots import visualize, write_plots

    print(format_metrics(ev.metrics, ev.cat_names))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(metrics_to_json(ev.metrics), indent=1) + "\n")
        print(f"metrics written to {args.json_out}")
    if args.plots:
        paths = write_plots(ev, args.plots)
        print(f"{len(paths)} plots written to {args.plots}")
    if args.visualize:
        if image_path is None:
            raise UsageError("--visualize: this dataset does not expose image paths (image_path(image_id))")
        vis_dir = args.vis_dir or (args.plots / "vis" if args.plots else Path("vis"))
        paths = visualize(ev, results, image_path, vis_dir, args.visualize)
        print(f"{len(paths)} images with detections written to {vis_dir}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        ev, results, image_path = (_evaluation_of_files if args.gt else _evaluation_of_checkpoint)(args)
        _write_outputs(args, ev, results, image_path)
    except (FileNotFoundError, EvaluationInputError, ConfigError, UsageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
