#!/usr/bin/env python
"""Builds a COCO-layout dataset from a Pascal-VOC tree, one split per `ImageSets/Main/<split>.txt` list.

Input: `<voc>/Annotations/<id>.xml`, `<voc>/JPEGImages/<file name of the XML>`, `<voc>/ImageSets/Main/<split>.txt`.
Output: `<out>/<split>/<image files>` (copies, or links with `--symlink`) and
`<out>/annotations/instances_<split>.json`. All splits share one category table (sorted class names over every
split, or `--categories`). Bad boxes and images are listed with file and object index and dropped, with counts per
split (`--strict`: exit 1 instead); an id listed in two splits is reported. Does nothing when the output exists
(`--force` rebuilds). Check the result with `scripts/check_dataset.py`.

Example: python scripts/prepare_voc.py --voc ../shared/data/bccd --out datasets/bccd
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.errors import DatasetError  # noqa: E402
from data.tools.voc import (DEFAULT_MIN_BOX_SIZE, ConversionReport, VocAnnotation, category_table,  # noqa: E402
                      parse_voc_xml, read_split_list, save_coco_json, voc_to_coco)


def read_splits(voc: Path, splits: list[str], one_based: bool = True) -> dict[str, list[VocAnnotation]]:
    """The parsed annotations of every split list, in list order."""
    out = {}
    for split in splits:
        files = [voc / "Annotations" / f"{i}.xml" for i in read_split_list(voc / "ImageSets" / "Main" / f"{split}.txt")]
        anns = []
        for f in files:
            try:
                data = f.read_bytes()
            except OSError as err:
                raise DatasetError(f"{f}: listed in {split}.txt but cannot be read ({err.strerror or err})") from None
            anns.append(parse_voc_xml(data, str(f), one_based=one_based))
        out[split] = anns
    return out


def shared_ids(voc: Path, splits: list[str]) -> list[str]:
    """'id: split1, split2' for every image id listed in more than one split (a train/val leak)."""
    where: dict[str, list[str]] = {}
    for split in splits:
        for i in dict.fromkeys(read_split_list(voc / "ImageSets" / "Main" / f"{split}.txt")):
            where.setdefault(i, []).append(split)
    return [f"{i}: {', '.join(s)}" for i, s in where.items() if len(s) > 1]


def place_images(voc: Path, coco: dict, dest: Path, symlink: bool) -> None:
    """Copies (or links) the images of `coco` from `<voc>/JPEGImages` into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for info in coco["images"]:
        src, dst = voc / "JPEGImages" / info["file_name"], dest / info["file_name"]
        if not src.is_file():
            raise DatasetError(f"{src}: image of an annotation file not found")
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        if symlink:
            os.symlink(src.resolve(), dst)
        else:
            shutil.copyfile(src, dst)


def convert(voc: Path, splits: list[str], categories: list[str] | None, name_map: dict[str, str], *,
            difficult: str, min_size: float, strict: bool
            ) -> tuple[list[str], dict[str, tuple[dict, ConversionReport]]]:
    """(category table, {split: (COCO dict, report)}) of a VOC tree; one table for all splits."""
    parsed = read_splits(voc, splits)
    cats = categories or category_table([a for anns in parsed.values() for a in anns], name_map)
    return cats, {split: voc_to_coco(anns, cats, name_map, difficult, min_size=min_size, strict=strict)
                  for split, anns in parsed.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voc", required=True, help="VOC root (Annotations/, JPEGImages/, ImageSets/Main/)")
    parser.add_argument("--out", required=True, help="output COCO-layout root")
    parser.add_argument("--splits", default="train,val", help="comma-separated split lists (default %(default)s)")
    parser.add_argument("--categories", help="comma-separated class names in id order (default: sorted names found)")
    parser.add_argument("--map", action="append", default=[], metavar="OLD=NEW", help="rename a class (repeatable)")
    parser.add_argument("--difficult", choices=("crowd", "keep", "drop"), default="crowd")
    parser.add_argument("--min-size", type=float, default=DEFAULT_MIN_BOX_SIZE,
                        help="boxes narrower or shorter than this many px are bad (default %(default)s)")
    parser.add_argument("--strict", action="store_true", help="fail on any bad box or image instead of dropping it")
    parser.add_argument("--symlink", action="store_true", help="link the images instead of copying them")
    parser.add_argument("--force", action="store_true", help="rebuild even if the output exists")
    args = parser.parse_args(argv)
    voc, out = Path(args.voc), Path(args.out)
    splits = [s for s in args.splits.split(",") if s]
    try:
        name_map = dict(item.split("=", 1) for item in args.map)
    except ValueError:
        parser.error(f"--map expects OLD=NEW, got {args.map}")
    ann_files = {s: out / "annotations" / f"instances_{s}.json" for s in splits}
    if all(f.is_file() for f in ann_files.values()) and not args.force:
        print(f"[prepare-voc] {out} already prepared; skipping (use --force to rebuild)")
        return 0
    try:
        if not (voc / "Annotations").is_dir():
            raise DatasetError(f"{voc}: not a VOC tree (no Annotations/ folder)")
        cats, results = convert(voc, splits, args.categories.split(",") if args.categories else None, name_map,
                                difficult=args.difficult, min_size=args.min_size, strict=args.strict)
        for leak in shared_ids(voc, splits):
            print(f"[prepare-voc] warning: image listed in two splits: {leak}")
        for split, (coco, _) in results.items():
            place_images(voc, coco, out / split, args.symlink)
        for split, (coco, report) in results.items():  # annotation files last: their presence marks a full build
            save_coco_json(coco, ann_files[split])
            print(report.format(f"[prepare-voc] {split}: dropped"))
            print(f"[prepare-voc] {split}: {len(coco['images'])} images, {len(coco['annotations'])} boxes "
                  f"-> {ann_files[split]}")
    except (OSError, DatasetError) as err:
        print(f"[prepare-voc] error: {err}", file=sys.stderr)
        return 1
    print(f"[prepare-voc] categories (ids 1..{len(cats)}): {', '.join(cats)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
