"""Training-augmentation throughput per worker process: our `ssd` preset vs torchvision's v2 SSD pipeline.

Both pipelines decode the same in-memory JPEG bytes of coco-mini train2017, augment to 512² and return a
normalised float32 `(3, 512, 512)` tensor plus boxes, single-threaded (as one DataLoader worker would).
Rounds alternate between the two pipelines so that load from other processes hits both alike.
Usage: python benchmarks/bench_data.py [--root ../shared/data/coco-mini] [--rounds 3]
Also times decoding alone with and without `decode_image`'s checks (complete file, libjpeg corruption warnings).
Last line: `ssd/torchvision throughput ratio: X.XX` (images/s of ours over images/s of torchvision).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.io import decode_jpeg
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.annotations import load_annotations  # noqa: E402
from data.config import DataConfig  # noqa: E402
from data.image_io import decode_image  # noqa: E402
from data.presets import build_train_transforms  # noqa: E402

RGB_MEAN, RGB_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def torchvision_pipeline(size: int) -> v2.Compose:
    """torchvision's SSD recipe (references/detection presets 'ssd') ending in a normalised float tensor."""
    return v2.Compose([
        v2.RandomPhotometricDistort(p=0.5),
        v2.RandomZoomOut(fill={tv_tensors.Image: [124, 116, 104], "others": 0}),
        v2.RandomIoUCrop(),
        v2.RandomHorizontalFlip(p=0.5),
        v2.Resize((size, size)),
        v2.SanitizeBoundingBoxes(labels_getter=lambda inputs: inputs[1]["labels"]),
        v2.ToDtype(torch.float32, scale=False),
        v2.Normalize(RGB_MEAN, RGB_STD),
    ])


def run_ours(items, transforms, seed: int) -> float:
    start = time.perf_counter()
    for i, (data, rec) in enumerate(items):
        image = decode_image(data)
        target = {"boxes": rec.boxes.copy(), "labels": rec.labels.copy(), "crowd_boxes": rec.crowd_boxes.copy()}
        transforms(image, target, np.random.default_rng((seed, i)))
    return len(items) / (time.perf_counter() - start)


def run_torchvision(items, transforms) -> float:
    start = time.perf_counter()
    for data, rec in items:
        image = tv_tensors.Image(decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8)))
        boxes = tv_tensors.BoundingBoxes(torch.from_numpy(rec.boxes), format="XYXY", canvas_size=image.shape[-2:])
        transforms(image, {"boxes": boxes, "labels": torch.from_numpy(rec.labels)})
    return len(items) / (time.perf_counter() - start)


def run_decode(items, checked: bool) -> float:
    """Images/s of decoding alone: `decode_image` (checked) or a bare `cv2.imdecode` (unchecked)."""
    start = time.perf_counter()
    for data, _ in items:
        if checked:
            decode_image(data)
        else:
            cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-mini"))
    parser.add_argument("--split", default="train2017")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    root = Path(args.root)
    index = load_annotations(root / "annotations" / f"instances_{args.split}.json")
    items = [((root / args.split / r.file_name).read_bytes(), r) for r in index.records if len(r.boxes)]
    ours = build_train_transforms(DataConfig(root=str(root), train_size=args.size))
    theirs = torchvision_pipeline(args.size)
    torch.manual_seed(0)
    run_ours(items[:5], ours, 99)  # warm-up (imports, allocator)
    run_torchvision(items[:5], theirs)
    rates = {"ssd (ours)": [], "torchvision v2 ssd": []}
    decode_rates = {True: [], False: []}
    for r in range(args.rounds):
        rates["ssd (ours)"].append(run_ours(items, ours, r))
        rates["torchvision v2 ssd"].append(run_torchvision(items, theirs))
        for checked in (True, False):
            decode_rates[checked].append(run_decode(items, checked))
    print(f"{len(items)} images of {root.name}/{args.split}, output {args.size}x{args.size}, 1 thread, "
          f"{args.rounds} rounds (decode + augment + normalise)")
    print(f"{'pipeline':<22}{'median img/s':>14}{'min':>8}{'max':>8}")
    for name, values in rates.items():
        print(f"{name:<22}{np.median(values):>14.1f}{min(values):>8.1f}{max(values):>8.1f}")
    checked, bare = np.median(decode_rates[True]), np.median(decode_rates[False])
    print(f"decode only: checked {checked:.1f} img/s, bare cv2.imdecode {bare:.1f} img/s "
          f"(checks cost {100 * (bare / checked - 1):+.1f}% time)")
    ratio = np.median(rates["ssd (ours)"]) / np.median(rates["torchvision v2 ssd"])
    print(f"ssd/torchvision throughput ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
