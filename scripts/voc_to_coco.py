#!/usr/bin/env python
"""Converts Pascal-VOC XML files to one COCO `instances_*.json`.

Bad boxes and images (see `data/tools/voc.py`) are listed with their file and object index and dropped (`--strict`: exit
1 instead); the counts are printed. With `--list`, only the ids of a split list are converted, but the category
table still comes from every XML file of `--xml-dir`, so per-split runs give the same table (or pass
`--categories`). For a whole VOC tree with its split lists, use `scripts/prepare_voc.py`.

Example: python scripts/voc_to_coco.py --xml-dir VOC2007/Annotations --out instances_train.json \
             --map Alive=tree --map Dead=tree --categories tree
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.errors import DatasetError  # noqa: E402
from data.tools.voc import (DEFAULT_MIN_BOX_SIZE, category_table, parse_voc_xml, read_split_list,  # noqa: E402
                      save_coco_json, voc_to_coco)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("xml", nargs="*", help="XML files (or use --xml-dir)")
    parser.add_argument("--xml-dir", help="folder of *.xml files (sorted by name)")
    parser.add_argument("--list", help="split list (ImageSets/Main/<split>.txt): convert only <xml-dir>/<id>.xml")
    parser.add_argument("--out", required=True, help="output COCO JSON file")
    parser.add_argument("--categories", help="comma-separated class names in id order (default: sorted names found)")
    parser.add_argument("--map", action="append", default=[], metavar="OLD=NEW", help="rename a class (repeatable)")
    parser.add_argument("--zero-based", action="store_true", help="corners are continuous 0-based coordinates")
    parser.add_argument("--difficult", choices=("crowd", "keep", "drop"), default="crowd")
    parser.add_argument("--min-size", type=float, default=DEFAULT_MIN_BOX_SIZE,
                        help="boxes narrower or shorter than this many px are bad (default %(default)s)")
    parser.add_argument("--strict", action="store_true", help="fail on any bad box or image instead of dropping it")
    args = parser.parse_args(argv)
    if args.list and not args.xml_dir:
        parser.error("--list needs --xml-dir")
    if Path(args.out).is_dir():
        parser.error(f"--out {args.out} is a folder; give the JSON file to write")
    try:
        name_map = dict(item.split("=", 1) for item in args.map)
    except ValueError:
        parser.error(f"--map expects OLD=NEW, got {args.map}")
    one_based = not args.zero_based
    try:
        every = sorted(Path(args.xml_dir).glob("*.xml")) if args.xml_dir else []
        if args.list:
            chosen = [Path(args.xml_dir) / f"{i}.xml" for i in read_split_list(args.list)]
        else:
            chosen = every
        files = [Path(p) for p in args.xml] + chosen
        if not files:
            parser.error("no XML files given")
        anns = [parse_voc_xml(f.read_bytes(), str(f), one_based=one_based) for f in files]
        if args.categories:
            cats = args.categories.split(",")
        else:  # the table of the whole folder, not of this split
            rest = [f for f in every if f not in set(chosen)]
            pool = anns + [parse_voc_xml(f.read_bytes(), str(f), one_based) for f in rest]
            cats = category_table(pool, name_map)
        coco, report = voc_to_coco(anns, cats, name_map, args.difficult, min_size=args.min_size, strict=args.strict)
        save_coco_json(coco, args.out)
    except (OSError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.format("dropped"))
    print(f"wrote {args.out}: {len(coco['images'])} images, {len(coco['annotations'])} boxes, "
          f"{len(coco['categories'])} categories ({', '.join(cats)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
