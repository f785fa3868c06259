"""Our evaluator against the authors' released LRP evaluator on the shared reference cases (abs error <= 1e-6)."""
import json
import math

import pytest

from alrp.metrics import detection_metrics, load_gt

CASES = ("case00_small", "case01_medium", "case02_large")


def _close(expected, ours, key):
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        assert ours is None or math.isnan(ours), f"{key}: expected undefined, got {ours}"
    else:
        assert ours is not None and abs(expected - ours) <= 1e-6, f"{key}: expected {expected}, got {ours}"


@pytest.mark.parametrize("case", CASES)
def test_matches_authors_evaluator(eval_reference_dir, case):
    folder = eval_reference_dir / case
    if not folder.exists():
        pytest.skip(f"{folder} missing")
    expected = json.loads((folder / "expected.json").read_text())
    ours = detection_metrics(load_gt(folder / "gt.json"), folder / "dets.json")
    compared = 0
    for key, value in expected.items():
        if key == "per_class":
            continue
        _close(value, ours[key], key)
        compared += 1
    assert compared >= 20
    per_class = expected["per_class"]
    assert {int(k) for k in per_class} == set(ours["per_class"])
    for cat_id, row in per_class.items():
        mine = ours["per_class"][int(cat_id)]
        if row is None or row["oLRP"] is None:
            assert mine is None, f"class {cat_id} has no ground truth: expected None"
            continue
        for key, value in row.items():
            _close(value, mine[key], f"per_class[{cat_id}].{key}")
