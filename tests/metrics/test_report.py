"""Per-class AP scalars for the learning curves."""
import math

from alrp.metrics.report import class_ap_scalars


def test_class_ap_scalars_name_each_class_with_ground_truth():
    metrics = {"AP": 0.4, "per_class": {1: {"AP": 0.25, "oLRP": 0.8}, 2: None, 3: {"AP": math.nan}, 7: {"AP": 0.5}}}
    # class 2 has no ground truth (None), class 3 an undefined AP: neither becomes a curve point
    assert class_ap_scalars(metrics, {1: "Platelets", 2: "RBC", 3: "WBC"}) == {"AP/Platelets": 0.25, "AP/7": 0.5}
    assert class_ap_scalars({"AP": 0.4}) == {}
