"""Printable metric tables and JSON-safe conversion (NaN -> null, category ids -> strings)."""
from __future__ import annotations

import math
from typing import Any, Mapping

_ROWS = (("COCO", ("AP", "AP50", "AP75", "AP90", "APs", "APm", "APl")),
         ("", ("AR1", "AR10", "AR100", "ARs", "ARm", "ARl")),
         ("LRP", ("oLRP", "oLRP_loc", "oLRP_FP", "oLRP_FN", "oLRP_s", "oLRP_m", "oLRP_l", "rho")))


def _fmt(value: Any, width: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-".rjust(width)
    if isinstance(value, float):
        return f"{value:.4f}".rjust(width)
    return str(value).rjust(width)


def format_metrics(metrics: Mapping[str, Any], cat_names: Mapping[int, str] | None = None) -> str:
    """A fixed-width text table of the summary metrics followed by the per-class oLRP table.

    '-' marks undefined values (NaN/None); AP values of -1 mean "no ground truth in that range" (pycocotools).
    """
    lines = []
    for title, keys in _ROWS:
        present = [k for k in keys if k in metrics]
        lines.append(f"{title:<5}" + "".join(k.rjust(10) for k in present))
        lines.append(" " * 5 + "".join(_fmt(metrics[k], 10) for k in present))
    per_class = metrics.get("per_class") or {}
    if per_class:
        cols = ("AP", "oLRP", "oLRP_loc", "oLRP_FP", "oLRP_FN", "threshold", "num_gt")
        lines.append("")
        lines.append(f"{'class':<20}" + "".join(c.rjust(10) for c in cols))
        for cat_id, row in per_class.items():
            name = (cat_names or {}).get(int(cat_id), str(cat_id))
            label = f"{name} ({cat_id})"[:19]
            cells = "".join(_fmt(None if row is None else row.get(c), 10) for c in cols)
            lines.append(f"{label:<20}" + (cells if row is not None else "no ground truth".rjust(10 * len(cols))))
    return "\n".join(lines)


def class_ap_scalars(metrics: Mapping[str, Any], cat_names: Mapping[int, str] | None = None) -> dict[str, float]:
    """``{"AP/<class name>": AP}`` of every class with ground truth in ``metrics["per_class"]`` (names by category
    id, the id itself when unnamed); empty when the metrics have no per-class rows."""
    scalars = {}
    for cat_id, row in (metrics.get("per_class") or {}).items():
        if row is None or row.get("AP") is None or not math.isfinite(float(row["AP"])):
            continue
        scalars[f"AP/{(cat_names or {}).get(int(cat_id), str(cat_id))}"] = float(row["AP"])
    return scalars


def metrics_to_json(value: Any) -> Any:
    """Recursively convert NaN/inf to None, numpy scalars to Python, and dict keys to strings (for json.dump)."""
    if isinstance(value, Mapping):
        return {str(k): metrics_to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [metrics_to_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
