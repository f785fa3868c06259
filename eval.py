"""Evaluate detections: COCO AP/AR, oLRP (+ components, per class, thresholds) and rho.

Modes:
    python eval.py --gt ann.json --detections results.json [--json-out m.json] [--plots DIR]
                   [--visualize N --image-dir DIR]
    python eval.py --config C.yaml --checkpoint K.pth [--split val] [--json-out m.json] [--plots DIR]
                   [--visualize N] [--submission OUT.zip] [--tta-scales S [S ...]] [--tta-flip]
                   [--set key=value ...]
    python eval.py --config C.yaml --checkpoint K.pth --split test-dev2017 --submission OUT.zip
    python eval.py --config C.yaml --checkpoint K.pth --images PATH... [--out DIR] [--score-threshold S]
Missing or malformed inputs print one error line naming the file and exit with status 2.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from training.config import ConfigError, load_config
from training.fs import os_error_cause, writable_problem
from alrp.metrics import EvaluationInputError, compute_evaluation, format_metrics, load_gt, metrics_to_json
from alrp.metrics.coco import read_results
from alrp.metrics.evaluation import Evaluation

LOG = logging.getLogger("eval")


TEST_DEV = "test-dev2017"


class UsageError(Exception):
    """A user-facing problem (exit status 2)."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    files = p.add_argument_group("mode 1: evaluate a COCO results file")
    files.add_argument("--gt", type=Path, help="COCO ground-truth annotation JSON")
    files.add_argument("--detections", type=Path, help="COCO results JSON (list of image_id/category_id/bbox/score)")
    files.add_argument("--image-dir", type=Path, help="folder of the GT images (their file_name), for --visualize")
    model = p.add_argument_group("mode 2: run a trained detector")
    model.add_argument("--config", type=Path, help="experiment YAML")
    model.add_argument("--checkpoint", type=Path, help="checkpoint file (its 'model' state dict is loaded)")
    model.add_argument("--split", choices=("val", "train", TEST_DEV),
                       help="dataset split (default: eval.split of the config); test-dev2017 reads "
                            "annotations/image_info_test-dev2017.json and test2017/ under data.root (no metrics)")
    model.add_argument("--submission", type=Path, metavar="OUT.zip",
                       help="also write the detections as a COCO evaluation-server zip (checked first)")
    model.add_argument("--method-name", help="the <method> of detections_<split>_<method>_results.json "
                                             "(default: the config's name)")
    images = p.add_argument_group("mode 3: predict on images without ground truth (with --config, --checkpoint)")
    images.add_argument("--images", nargs="+", metavar="PATH", help="image files, folders or globs")
    images.add_argument("--out", type=Path, metavar="DIR",
                        help="results.json + drawn images (default: <run folder>/predictions)")
    images.add_argument("--score-threshold", type=float, metavar="S",
                        help="draw boxes with score >= S (default: the checkpoint's LRP-optimal thresholds, else 0.5)")
    model.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                       help="config overrides, e.g. data.root=/coco (repeatable)")
    model.add_argument("--tta-scales", nargs="+", type=int, metavar="S",
                       help="test-time augmentation: short sides to test at (= --set eval.tta_scales=[...])")
    model.add_argument("--tta-flip", action="store_true", help="test-time augmentation: add mirrored images")
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
    if mode1 and args.visualize and not args.image_dir:
        p.error("--visualize in mode 1 needs --image-dir DIR (the folder of the ground-truth images)")
    if mode2 and args.image_dir:
        p.error("--image-dir goes with --gt (mode 2 knows its images; mode 3 takes --images PATH...)")
    if mode1 and (args.images or args.submission):
        p.error("--images and --submission need --config and --checkpoint")
    if args.images and (args.split or args.submission or args.visualize or args.plots or args.json_out):
        p.error("--images predicts without ground truth: it takes --out and --score-threshold, not "
                "--split/--submission/--visualize/--plots/--json-out")
    if not args.images and (args.out or args.score_threshold is not None):
        p.error("--out and --score-threshold go with --images")
    if args.split == TEST_DEV and (args.visualize or args.plots or args.json_out):
        p.error("test-dev2017 has no ground truth: use --submission (no --visualize/--plots/--json-out)")
    if (mode1 or args.images or args.split == TEST_DEV) and (args.tta_scales or args.tta_flip):
        p.error("--tta-scales / --tta-flip evaluate a split with ground truth (mode 2, not --images or test-dev)")
    args.set += ([f"eval.tta_scales=[{','.join(map(str, args.tta_scales))}]"] if args.tta_scales else []) + \
        (["eval.tta_flip=true"] if args.tta_flip else [])
    return args


def _evaluation_of_files(args: argparse.Namespace) -> tuple[Evaluation, list[dict], Callable[[int], Path] | None]:
    coco_gt = load_gt(args.gt)
    results, source = read_results(args.detections)
    ev = compute_evaluation(coco_gt, results, source)
    image_path = None
    if args.image_dir:
        if not args.image_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {args.image_dir}")
        image_path = lambda image_id: args.image_dir / coco_gt.imgs[image_id]["file_name"]  # noqa: E731
    return ev, results, image_path


def _checkpoint_inputs(args: argparse.Namespace) -> tuple[Any, dict, Any]:
    """(config, checkpoint state, device) of mode 2/3; problems raise UsageError/FileNotFoundError (one line)."""
    from training.checkpoint import CheckpointError, load_checkpoint
    from training.distributed import DeviceUnavailableError, resolve_device

    cfg = load_config(args.config, args.set)
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    try:
        return cfg, load_checkpoint(args.checkpoint, map_location="cpu"), resolve_device(cfg.device)
    except (CheckpointError, DeviceUnavailableError) as err:
        raise UsageError(str(err)) from None


def _detector(args: argparse.Namespace, cfg: Any, state: dict, num_classes: int, device: Any) -> Any:
    """The config's detector with the checkpoint's weights, on `device`."""
    from training.build import build_model

    model = build_model(cfg, num_classes, device, pretrained=False)  # the checkpoint holds every weight
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:  # shapes/keys differ: the checkpoint is from another model config
        raise UsageError(f"{args.checkpoint}: does not fit the model of {args.config}: {err}") from None
    return model


def _evaluation_of_checkpoint(args: argparse.Namespace) -> tuple[Evaluation, list[dict], Callable[[int], Path] | None]:
    from training import inference
    from training.build import build_split
    from data.categories import category_table, check_same_categories
    from data.errors import DatasetError, error_message

    cfg, state, device = _checkpoint_inputs(args)
    split = args.split or cfg.eval.split
    try:
        dataset, loader = build_split(cfg, split, train=False, batch_size=cfg.eval.batch_size)
        # a checkpoint of another category table would be evaluated against the wrong ids
        check_same_categories(state.get("categories"), f"checkpoint {args.checkpoint}", category_table(dataset),
                              dataset.ann_file)
    except DatasetError as err:
        raise UsageError(str(err)) from None
    model = _detector(args, cfg, state, dataset.num_classes, device)
    detect = None
    if cfg.eval.tta:
        from models.tta import MultiScaleFlipTTA, ScaleViews

        try:
            loader = ScaleViews(_scale_loaders(cfg, split))
        except DatasetError as err:
            raise UsageError(str(err)) from None
        detect = MultiScaleFlipTTA(flip=cfg.eval.tta_flip, max_sizes=cfg.eval.tta_max_sizes)
        LOG.info("test-time augmentation: scales %s, flip %s", cfg.eval.tta_scales or [cfg.data.eval_short_side],
                 cfg.eval.tta_flip)
    try:
        results = inference.predict_coco_results(model, loader, device, label_to_cat_id=dataset.label_to_cat_id,
                                                 detect=detect)
    except DatasetError as err:  # an unreadable image (data.on_bad_image: error)
        raise UsageError(error_message(err)) from None
    out = cfg.run_dir / "eval" / f"{args.checkpoint.stem}_{split}_results.json"
    with _writing("detections file", out):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results))
    LOG.info("detections written to %s", out)
    if args.submission:
        _write_submission(args, cfg, results, cfg.data.split_folder(split), dataset.coco.getImgIds(), dataset.cat_ids)
    if args.plots is None and cfg.eval.plots:
        args.plots = cfg.run_dir / "eval" / f"plots_{split}"
    image_path = lambda image_id: Path(dataset.img_dir) / dataset.coco.imgs[image_id]["file_name"]  # noqa: E731
    return compute_evaluation(dataset.coco, results), results, image_path


def _write_submission(args: argparse.Namespace, cfg: Any, results: list[dict], split: str, image_ids: Any,
                      cat_ids: Any) -> None:
    from training.submission import SubmissionError, result_file_name, write_submission

    method = args.method_name or cfg.name
    try:
        write_submission(args.submission, results, split, method, image_ids, cat_ids)
    except SubmissionError as err:
        raise UsageError(f"{args.submission} not written: {err}") from None
    print(f"submission written to {args.submission} ({result_file_name(split, method)}, {len(results)} detections)")


def _predict(args: argparse.Namespace) -> None:
    """Mode 3 (--images) and test-dev: detections without ground truth, through the eval loader."""
    import data
    from training import predictions as pr
    from data.errors import DatasetError, error_message
    from data.image_list import ImageListDataset, entries_from_files, expand_inputs, load_image_info
    from data.presets import build_eval_transforms

    cfg, state, device = _checkpoint_inputs(args)
    root = Path(cfg.data.root)
    try:
        table = pr.class_table(state, root / "annotations" / f"instances_{cfg.data.val_split}.json")
        if args.images:
            files, skipped = expand_inputs(args.images)
            entries, unreadable = entries_from_files(files)
            skipped += unreadable
        else:
            entries, categories = load_image_info(root / "annotations" / f"image_info_{TEST_DEV}.json",
                                                  root / "test2017")
            skipped = []
            if [int(c["id"]) for c in categories] != table.cat_ids:
                raise UsageError(f"the checkpoint's {len(table.cat_ids)} classes are not the categories of "
                                 f"image_info_{TEST_DEV}.json ({len(categories)})")
        for item in skipped:
            print(f"skipping {item}", file=sys.stderr)
        dataset = ImageListDataset(entries, build_eval_transforms(cfg.data))
        loader = data.build_loader(dataset, cfg.data, train=False, batch_size=cfg.eval.batch_size)
        model = _detector(args, cfg, state, len(table.cat_ids), device)
        results = pr.predict_images(model, dataset, loader, device, table)
    except (DatasetError, ValueError) as err:
        raise UsageError(error_message(err)) from None
    skipped += dataset.skipped()
    if args.images:
        out_dir = args.out or cfg.run_dir / "predictions"
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(results))
        thresholds, default, how = pr.score_thresholds(state, args.score_threshold)
        drawn = pr.draw_all(dataset, results, out_dir, table.name_of(), thresholds, default)
        print(f"{len(results)} detections on {len(entries) - len(dataset.skipped_ids())} images written to "
              f"{out_dir / 'results.json'}; {len(drawn)} drawn images in {out_dir} (boxes with {how})")
    else:
        out = cfg.run_dir / "eval" / f"{args.checkpoint.stem}_{TEST_DEV}_results.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results))
        print(f"{len(results)} detections written to {out} (test-dev2017 has no ground truth: no metrics)")
        if args.submission:
            _write_submission(args, cfg, results, TEST_DEV, [e.image_id for e in entries], table.cat_ids)
    if skipped:
        print(f"{len(skipped)} input(s) skipped: " + "; ".join(str(s) for s in skipped), file=sys.stderr)


def _output_options(args: argparse.Namespace) -> list[tuple[str, Path, bool]]:
    """``(option, path, is_folder)`` of every output the command line names."""
    outputs = [("--json-out", args.json_out, False), ("--plots", args.plots, True),
               ("--submission", args.submission, False), ("--out", args.out, True)]
    if args.visualize:
        outputs.append(("--vis-dir", args.vis_dir, True))
    return [(option, path, folder) for option, path, folder in outputs if path is not None]


def _check_outputs(args: argparse.Namespace) -> None:
    """Fails before the (possibly long) evaluation when an output cannot be written."""
    for option, path, folder in _output_options(args):
        problem = writable_problem(path, folder=folder)
        if problem is not None:
            raise UsageError(f"{option} {path}: {problem}")


def _scale_loaders(cfg, split: str) -> list:
    """One eval loader per `eval.tta_scales` entry (short side s, long side s * eval_max_size / eval_short_side)."""
    from training.build import build_split

    loaders = []
    for short in cfg.eval.tta_scales or [cfg.data.eval_short_side]:
        longest = int(round(short * cfg.data.eval_max_size / cfg.data.eval_short_side))
        scaled = replace(cfg, data=replace(cfg.data, eval_short_side=short, eval_max_size=longest))
        loaders.append(build_split(scaled, split, train=False, batch_size=cfg.eval.batch_size)[1])
    return loaders


def _write_outputs(args: argparse.Namespace, ev: Evaluation, results: list[dict],
                   image_path: Callable[[int], Path] | None) -> None:
    from alrp.metrics.plots import visualize, write_plots

    print(format_metrics(ev.metrics, ev.cat_names))
    if args.json_out:
        with _writing("--json-out", args.json_out):
            args.json_out.parent.mkdir(parents=True, exist_ok=True)
            args.json_out.write_text(json.dumps(metrics_to_json(ev.metrics), indent=1) + "\n")
        print(f"metrics written to {args.json_out}")
    if args.plots:
        with _writing("--plots", args.plots):
            paths = write_plots(ev, args.plots)
        print(f"{len(paths)} plots written to {args.plots}")
    if args.visualize:
        if image_path is None:
            raise UsageError("--visualize: this dataset does not expose image paths (image_path(image_id))")
        vis_dir = args.vis_dir or (args.plots / "vis" if args.plots else Path("vis"))
        with _writing("--vis-dir", vis_dir):
            paths = visualize(ev, results, image_path, vis_dir, args.visualize)
        print(f"{len(paths)} images with detections written to {vis_dir}")


@contextlib.contextmanager
def _writing(option: str, path: Path) -> Iterator[None]:
    """Turns a failed write under ``option``'s ``path`` into a one-line `UsageError` (e.g. a disk that filled up)."""
    try:
        yield
    except OSError as err:
        raise UsageError(f"{option} {path}: {os_error_cause(err, err.filename or path)}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        _check_outputs(args)
        if args.images or args.split == TEST_DEV:
            _predict(args)
            return 0
        ev, results, image_path = (_evaluation_of_files if args.gt else _evaluation_of_checkpoint)(args)
        _write_outputs(args, ev, results, image_path)
    except (FileNotFoundError, EvaluationInputError, ConfigError, UsageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
