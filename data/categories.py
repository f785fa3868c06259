"""Category tables: which category id each label means. Training, validation and checkpoints must agree on it,
otherwise AP is computed against the wrong ids (or a label has no category at all)."""
from __future__ import annotations

from typing import Any

from .errors import DatasetError

CategoryTable = list[dict[str, Any]]  # [{"id": COCO category id, "name": str}, ...] in label order (sorted ids)


def category_table(dataset: Any) -> CategoryTable | None:
    """The table of a dataset with ``cat_ids`` and ``class_names`` (e.g. `CocoDetection`); None for others."""
    cat_ids, names = getattr(dataset, "cat_ids", None), getattr(dataset, "class_names", None)
    if cat_ids is None or names is None:
        return None
    return [{"id": int(cid), "name": str(name)} for cid, name in zip(cat_ids, names)]


def class_names(dataset: Any) -> dict[int, str]:
    """{category id: name} of a dataset with a category table; {} for others."""
    return {c["id"]: c["name"] for c in category_table(dataset) or []}


def _describe(table: CategoryTable) -> str:
    return "[" + ", ".join(f"{c['id']} {c['name']!r}" for c in sorted(table, key=lambda c: c["id"])) + "]"


def check_same_categories(first: CategoryTable | None, first_source: str, second: CategoryTable | None,
                          second_source: str) -> None:
    """Raises `DatasetError` naming both sources when two tables differ (an unknown table is not compared)."""
    if first is None or second is None:
        return
    if sorted((c["id"], c["name"]) for c in first) != sorted((c["id"], c["name"]) for c in second):
        raise DatasetError(f"category tables differ: {first_source} has {_describe(first)} but {second_source} "
                           f"has {_describe(second)}")
