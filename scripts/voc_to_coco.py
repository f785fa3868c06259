#!/usr/bin/env python
"""Converts Pascal-VOC XML files to one COCO `instances_*.json`.

Example: python scripts/voc_to_coco.py --xml-dir VOC2007/Annotations --out instances_train.json \
             --map Alive=tree --map Dead=tree --categories tree
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.errors import DatasetError  # noqa: E402
from data.tools.voc import parse_voc_xml, voc_to_coco  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("xml", nargs="*", help="XML files (or use --xml-dir)")
    parser.add_argument("--xml-dir", help="folder of *.xml files (sorted by name)")
    parser.add_argument("--out", required=True, help="output COCO JSON file")
    parser.add_argument("--categories", help="comma-separated class names in id order (default: sorted names found)")
    parser.add_argument("--map", action="append", default=[], metavar="OLD=NEW", help="rename a class (repeatable)")
    parser.add_argument("--zero-based", action="store_true", help="corners are continuous 0-based coordinates")
    parser.add_argument("--difficult", choices=("crowd", "keep", "drop"), default="crowd")
    args = parser.parse_args(argv)
    files = [Path(p) for p in args.xml] + (sorted(Path(args.xml_dir).glob("*.xml")) if args.xml_dir else [])
    if not files:
        parser.error("no XML files given")
    try:
        name_map = dict(item.split("=", 1) for item in args.map)
    except ValueError:
        parser.error(f"--map expects OLD=NEW, got {args.map}")
    try:
        anns = [parse_voc_xml(f.read_bytes(), str(f), one_based=not args.zero_based) for f in files]
        cats = args.categories.split(",") if args.categories else None
        coco = voc_to_coco(anns, cats, name_map, args.difficult)
    except (OSError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(coco))
    print(f"wrote {args.out}: {len(coco['images'])} images, {len(coco['annotations'])} boxes, "
          f"{len(coco['categories'])} categories")
    return 0


if __name__ == "__main__":
    sys.exit(main())
