#!/usr/bin/env python
"""Builds the demo tree-crown dataset (COCO layout) from the images shipped in the deepforest wheel.

Source: the MIT-licensed `deepforest` package (weecology), whose `deepforest/data/` holds NEON airborne RGB
images with Pascal-VOC tree-crown boxes. The wheel is fetched with `pip download --no-deps` into a cache under
`datasets/` and read as a zip: nothing is installed. Large images are cut into non-overlapping tiles of about 400x400 px (crowns cut
below half their area become ignore regions); train and val come from different source images, so val is a
held-out area
(see SOURCES). Output: `<out>/{train,val}/*.jpg` and `<out>/annotations/instances_{train,val}.json`, one
category "tree". Does nothing when the output already exists (use --force to rebuild).

Example: python scripts/prepare_demo_data.py --out datasets/trees
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.tools.demo import tile_boxes, tile_spans  # noqa: E402
from data.errors import DatasetError  # noqa: E402
from data.image_io import decode_image  # noqa: E402
from data.tools.voc import parse_voc_xml  # noqa: E402

PACKAGE = "deepforest==2.1.0"
# (source image stem in deepforest/data/, split, tile rows [first, last) or None for all). Val holds out whole
# areas: another 1 km NEON tile of the YELL site, the SOAP site image and the bottom band (1 tile row) of the
# large YELL crop, whose upper rows are training tiles (tiles never overlap).
SOURCES = (
    ("2019_YELL_2_528000_4978000_image_crop2", "train", (0, 5)),
    ("OSBS_029", "train", None),
    ("2019_YELL_2_528000_4978000_image_crop2", "val", (5, None)),
    ("2019_YELL_2_541000_4977000_image_crop", "val", None),
    ("SOAP_061", "val", None),
)
SPLITS = ("train", "val")


def fetch_wheel(cache: Path) -> Path:
    """Returns the cached deepforest wheel, downloading it (no dependencies) on first use."""
    wheels = sorted(cache.glob("deepforest-*.whl"))
    if not wheels:
        cache.mkdir(parents=True, exist_ok=True)
        print(f"[demo-data] downloading {PACKAGE} wheel into {cache}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                        "-q", PACKAGE, "-d", str(cache)], check=True)
        wheels = sorted(cache.glob("deepforest-*.whl"))
    if not wheels:
        raise DatasetError(f"{cache}: no deepforest wheel after pip download")
    return wheels[-1]


def tile_source(wheel: zipfile.ZipFile, stem: str, rows: tuple[int, int | None] | None, tile: int,
                out_dir: Path, coco: dict[str, Any]) -> None:
    """Cuts one source image into ~`tile`-px tiles (tile `rows` only), writes them as JPEG and appends
    images/annotations to `coco`."""
    image = decode_image(wheel.read(f"deepforest/data/{stem}.png"), f"{stem}.png")
    ann = parse_voc_xml(wheel.read(f"deepforest/data/{stem}.xml"), f"{stem}.xml", one_based=True)
    if (ann.height, ann.width) != image.shape[:2]:
        raise DatasetError(f"{stem}.xml: size {ann.height}x{ann.width} differs from the image {image.shape[:2]}")
    boxes = np.array([o.box for o in ann.objects], dtype=np.float32).reshape(-1, 4)
    h, w = image.shape[:2]
    row_spans = tile_spans(h, tile)
    if rows is not None:
        row_spans = row_spans[rows[0]:rows[1]]
    for y0, y1 in row_spans:
        for x0, x1 in tile_spans(w, tile):
            th, tw = y1 - y0, x1 - x0
            kept, ignored = tile_boxes(boxes, (x0, y0), (tw, th))
            name = f"{stem}_{x0:04d}_{y0:04d}.jpg"
            if not cv2.imwrite(str(out_dir / name), image[y0:y0 + th, x0:x0 + tw], [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f"cannot write {out_dir / name}")
            image_id = len(coco["images"]) + 1
            coco["images"].append({"id": image_id, "file_name": name, "width": tw, "height": th})
            for crowd, group in ((0, kept), (1, ignored)):
                for x_0, y_0, x_1, y_1 in group.tolist():
                    coco["annotations"].append({
                        "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                        "bbox": [x_0, y_0, x_1 - x_0, y_1 - y_0], "area": (x_1 - x_0) * (y_1 - y_0),
                        "iscrowd": crowd})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="datasets/trees")
    parser.add_argument("--cache", default="datasets/.cache", help="where the deepforest wheel is kept")
    parser.add_argument("--wheel", help="use this deepforest wheel file instead of downloading")
    parser.add_argument("--tile", type=int, default=400, help="tile side in pixels")
    parser.add_argument("--force", action="store_true", help="rebuild even if the output exists")
    args = parser.parse_args(argv)
    out = Path(args.out)
    ann_files = [out / "annotations" / f"instances_{s}.json" for s in SPLITS]
    if all(f.is_file() for f in ann_files) and not args.force:
        print(f"[demo-data] {out} already prepared; skipping (use --force to rebuild)")
        return 0
    try:
        wheel_path = Path(args.wheel) if args.wheel else fetch_wheel(Path(args.cache))
        cocos = {s: {"info": {"description": f"deepforest {s} tiles", "source": PACKAGE},
                     "licenses": [{"id": 1, "name": "MIT (deepforest package); NEON data"}],
                     "images": [], "annotations": [],
                     "categories": [{"id": 1, "name": "tree", "supercategory": "tree"}]} for s in SPLITS}
        with zipfile.ZipFile(wheel_path) as wheel:
            for stem, split, rows in SOURCES:
                (out / split).mkdir(parents=True, exist_ok=True)
                tile_source(wheel, stem, rows, args.tile, out / split, cocos[split])
    except (OSError, KeyError, zipfile.BadZipFile, DatasetError, subprocess.CalledProcessError) as err:
        print(f"[demo-data] error: {err}", file=sys.stderr)
        return 1
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for split, path in zip(SPLITS, ann_files):  # annotation files last: their presence marks a complete run
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cocos[split]))
        tmp.replace(path)
        anns = cocos[split]["annotations"]
        crowd = sum(a["iscrowd"] for a in anns)
        print(f"[demo-data] {split}: {len(cocos[split]['images'])} tiles, {len(anns) - crowd} boxes, "
              f"{crowd} ignore regions -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
