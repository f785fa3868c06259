#!/usr/bin/env python
"""Scans a COCO-layout dataset and prints a report; exits 1 on fatal problems (bad annotations, unreadable
images, no images), 0 otherwise.

Example: python scripts/check_dataset.py --root datasets/coco --split val2017
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.tools.check import check_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="dataset root (annotations/, <split>/)")
    parser.add_argument("--split", required=True, action="append", help="split name (repeatable)")
    parser.add_argument("--quick", action="store_true", help="check files exist and are complete, do not decode")
    args = parser.parse_args(argv)
    try:
        from tqdm import tqdm
        progress = lambda it: tqdm(it, desc="images", unit="img", leave=False, file=sys.stderr)  # noqa: E731
    except ImportError:  # pragma: no cover
        progress = None
    status = 0
    for split in args.split:
        report = check_dataset(args.root, split, decode=not args.quick, progress=progress)
        print(report.format())
        status = max(status, int(bool(report.fatal)))
    return status


if __name__ == "__main__":
    sys.exit(main())
