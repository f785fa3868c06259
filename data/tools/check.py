"""Dataset health check behind scripts/check_dataset.py: counts, problems and a size histogram."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..annotations import MIN_BOX_SIZE, AnnotationIndex, load_annotations
from ..errors import BadImageError, DatasetError
from ..image_io import check_complete, read_image

SIZE_BINS = (256, 512, 1024, 2048)  # long-side bin edges, px
AREA_BINS = {"small (<32²)": 32 ** 2, "medium (<96²)": 96 ** 2}


@dataclass
class CheckReport:
    """What `check_dataset` found; `fatal` lists the problems that make training fail."""

    split: str
    loaded: bool = False  # the annotation file was read (else there is nothing to summarise)
    num_images: int = 0
    images_without_boxes: int = 0
    boxes_per_class: dict[str, int] = field(default_factory=dict)
    crowd_boxes: int = 0
    degenerate_boxes: int = 0
    degenerate_ann_ids: list[int] = field(default_factory=list)
    box_areas: dict[str, int] = field(default_factory=dict)
    size_histogram: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    fatal: list[str] = field(default_factory=list)

    def format(self) -> str:
        """Human-readable multi-line report (only the fatal problem when the annotation file could not be read)."""
        if not self.loaded:
            return f"split {self.split}: FATAL: " + "; ".join(self.fatal)
        lines = [f"split {self.split}: {self.num_images} images, {sum(self.boxes_per_class.values())} boxes, "
                 f"{self.crowd_boxes} crowd, {self.degenerate_boxes} degenerate (dropped), "
                 f"{self.images_without_boxes} images without usable boxes (skipped in training)"]
        if self.degenerate_ann_ids:
            shown = ", ".join(str(i) for i in self.degenerate_ann_ids[:50])
            more = f" ... and {len(self.degenerate_ann_ids) - 50} more" if len(self.degenerate_ann_ids) > 50 else ""
            lines.append(f"degenerate boxes dropped (< {MIN_BOX_SIZE:g} px wide or high), annotation ids: "
                         f"{shown}{more}")
        lines.append("boxes per class:")
        lines += [f"  {name:<24}{count:>8}" for name, count in self.boxes_per_class.items() if count]
        empty = [name for name, count in self.boxes_per_class.items() if not count]
        if empty:
            lines.append(f"classes without boxes ({len(empty)}): " + ", ".join(empty))
        lines.append("box areas: " + ", ".join(f"{k} {v}" for k, v in self.box_areas.items()))
        lines.append("image long side: " + ", ".join(f"{k} {v}" for k, v in self.size_histogram.items()))
        lines.append(f"unreadable images: {len(self.unreadable)}")
        lines += [f"  {msg}" for msg in self.unreadable[:50]]
        if len(self.unreadable) > 50:
            lines.append(f"  ... and {len(self.unreadable) - 50} more")
        lines.append("FATAL: " + "; ".join(self.fatal) if self.fatal else "OK: no fatal problems")
        return "\n".join(lines)


def _size_bin(long_side: int) -> str:
    lower = 0
    for edge in SIZE_BINS:
        if long_side < edge:
            return f"{lower}-{edge - 1}"
        lower = edge
    return f">={SIZE_BINS[-1]}"


def _summarise(report: CheckReport, index: AnnotationIndex) -> None:
    per_class: Counter = Counter()
    areas: Counter = Counter()
    sizes: Counter = Counter()
    for r in index.records:
        per_class.update(int(label) for label in r.labels)
        report.crowd_boxes += len(r.crowd_boxes)
        report.images_without_boxes += int(len(r.boxes) == 0)
        for x0, y0, x1, y1 in r.boxes:
            area = (x1 - x0) * (y1 - y0)
            areas[next((k for k, v in AREA_BINS.items() if area < v), "large")] += 1
        sizes[_size_bin(max(r.height, r.width))] += 1
    report.boxes_per_class = {name: per_class[k] for k, name in enumerate(index.class_names)}
    report.box_areas = {k: areas[k] for k in [*AREA_BINS, "large"]}
    bins_in_order = [_size_bin(lower) for lower in (0, *SIZE_BINS)]  # each bin named from its lower edge
    report.size_histogram = {b: sizes[b] for b in bins_in_order if b in sizes}


def check_dataset(root: str | Path, split: str, decode: bool = True, progress: object | None = None) -> CheckReport:
    """Scans `<root>/annotations/instances_<split>.json` and every image of `<root>/<split>/`.

    `decode=False` only checks that each file exists and is complete (fast); `decode=True` also decodes
    it and compares its size with the annotation file. `progress` wraps the image iterable (e.g. tqdm).
    """
    root = Path(root)
    report = CheckReport(split=split)
    try:
        index = load_annotations(root / "annotations" / f"instances_{split}.json")
    except DatasetError as err:
        report.fatal.append(str(err))
        return report
    report.loaded = True
    report.num_images = len(index.records)
    report.degenerate_boxes = index.num_degenerate
    report.degenerate_ann_ids = list(index.degenerate_ann_ids)
    _summarise(report, index)
    img_dir = root / split
    if not img_dir.is_dir():
        report.fatal.append(f"{img_dir}: image folder not found")
        return report
    records = progress(index.records) if progress else index.records
    for r in records:
        path = img_dir / r.file_name
        try:
            if decode:
                read_image(path, (r.height, r.width))
            elif not path.is_file():
                raise BadImageError(str(path), "image file not found")
            elif (problem := check_complete(path.read_bytes())) is not None:
                raise BadImageError(str(path), problem)
        except BadImageError as err:
            report.unreadable.append(str(err))
    if report.unreadable:
        report.fatal.append(f"{len(report.unreadable)} unreadable images (train with data.on_bad_image=skip "
                            f"to skip them, or fix the files)")
    if report.num_images == 0:
        report.fatal.append("no images")
    return report
