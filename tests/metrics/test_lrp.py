"""oLRP on hand-computed cases and the edge cases (empty detections, class without GT, empty images, crowd, maxDets)."""
import json
import math

import pytest
from pycocotools.coco import COCO

from alrp.metrics import METRIC_KEYS, EvaluationInputError, detection_metrics, load_gt, metrics_to_json
from alrp.metrics.lrp import ClassMatches, lrp_curve, optimal_lrp

import numpy as np


def make_gt(anns, n_images=2, cats=(1, 5)):
    """anns: list of (image_id, category_id, [x, y, w, h], iscrowd)."""
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in range(1, n_images + 1)],
        "categories": [{"id": c, "name": f"c{c}"} for c in cats],
        "annotations": [{"id": j + 1, "image_id": im, "category_id": c, "bbox": b, "area": b[2] * b[3],
                         "iscrowd": crowd} for j, (im, c, b, crowd) in enumerate(anns)],
    }
    coco.createIndex()
    return coco


def det(image_id, cat, bbox, score):
    return {"image_id": image_id, "category_id": cat, "bbox": bbox, "score": score}


BASE_GT = [(1, 1, [0, 0, 10, 10], 0), (1, 1, [20, 20, 10, 10], 0)]


def test_hand_computed_olrp_and_components():
    gt = make_gt(BASE_GT)
    dets = [det(1, 1, [0, 0, 10, 8], 0.9),      # TP, IoU 0.8
            det(1, 1, [60, 60, 10, 10], 0.8),   # FP
            det(1, 1, [20, 20, 10, 10], 0.7)]   # TP, IoU 1.0
    m = detection_metrics(gt, dets)
    # positions: LRP = (0.4 + 0 + 1)/2 = 0.7, (0.4 + 1 + 1)/3 = 0.8, (0.4 + 1 + 0)/3 = 0.4667 -> last
    row = m["per_class"][1]
    assert row["oLRP"] == pytest.approx(1.4 / 3, abs=1e-12)
    assert row["oLRP_loc"] == pytest.approx(0.1, abs=1e-12)
    assert row["oLRP_FP"] == pytest.approx(1 / 3, abs=1e-12)
    assert row["oLRP_FN"] == pytest.approx(0.0, abs=1e-12)
    assert row["threshold"] == pytest.approx(0.7)
    assert (row["num_gt"], row["num_tp"], row["num_fp"]) == (2, 2, 1)
    assert m["per_class"][5] is None  # no ground truth for class 5
    assert m["oLRP"] == pytest.approx(1.4 / 3, abs=1e-12)  # class 5 skipped in the mean
    assert list(m) == list(METRIC_KEYS)


def test_first_minimum_is_taken_on_ties():
    gt = make_gt(BASE_GT)
    dets = [det(1, 1, [0, 0, 10, 10], 0.9),     # TP IoU 1: LRP (0 + 0 + 1)/2 = 0.5
            det(1, 1, [60, 60, 10, 10], 0.8),   # FP: (0 + 1 + 1)/3
            det(1, 1, [20, 20, 10, 7.5], 0.7)]  # TP IoU 0.75: (0.5 + 1 + 0)/3 = 0.5 (tie)
    row = detection_metrics(gt, dets)["per_class"][1]
    assert row["oLRP"] == 0.5
    assert row["threshold"] == pytest.approx(0.9)
    assert row["oLRP_FN"] == 0.5 and row["oLRP_FP"] == 0.0 and row["oLRP_loc"] == 0.0


def test_empty_detections():
    gt = make_gt(BASE_GT + [(2, 5, [5, 5, 40, 40], 0)])
    m = detection_metrics(gt, [])
    assert m["AP"] == 0.0 and m["AP50"] == 0.0 and m["AR100"] == 0.0
    assert m["oLRP"] == 1.0 and m["oLRP_FN"] == 1.0
    assert math.isnan(m["oLRP_loc"]) and math.isnan(m["oLRP_FP"]) and math.isnan(m["rho"])
    for cat in (1, 5):
        assert m["per_class"][cat]["oLRP"] == 1.0 and math.isnan(m["per_class"][cat]["threshold"])
    json.dumps(metrics_to_json(m), allow_nan=False)  # NaN -> null


def test_class_without_gt_and_image_without_annotations():
    gt = make_gt(BASE_GT, n_images=3)
    dets = [det(1, 1, [0, 0, 10, 10], 0.9), det(1, 1, [20, 20, 10, 10], 0.8),
            det(3, 1, [0, 0, 10, 10], 0.95),   # image 3 has no annotations: an FP above both TPs
            det(2, 5, [0, 0, 10, 10], 0.5)]    # class 5 has no ground truth
    m = detection_metrics(gt, dets)
    row = m["per_class"][1]
    # positions: (0 + 1 + 2)/3 = 1, (0 + 1 + 1)/3, (0 + 1 + 0)/3 = 1/3
    assert row["oLRP"] == pytest.approx(1 / 3) and row["num_fp"] == 1
    assert m["per_class"][5] is None


def test_crowd_and_matched_to_ignored_are_neither_tp_nor_fp():
    gt = make_gt(BASE_GT + [(2, 1, [0, 0, 50, 50], 1)])
    dets = [det(1, 1, [0, 0, 10, 10], 0.9), det(2, 1, [0, 0, 50, 50], 0.95)]
    row = detection_metrics(gt, dets)["per_class"][1]
    assert row["num_gt"] == 2 and row["num_fp"] == 0 and row["num_tp"] == 1
    assert row["oLRP"] == pytest.approx(0.5)  # (0 + 0 + 1)/2


def test_max_dets_caps_each_image_at_100():
    gt = make_gt([(1, 1, [0, 0, 10, 10], 0)])
    dets = [det(1, 1, [50, 50, 10, 10], 0.9 - i * 1e-3) for i in range(100)]  # 100 FPs
    dets.append(det(1, 1, [0, 0, 10, 10], 0.1))  # the 101st: dropped by maxDets
    row = detection_metrics(gt, dets)["per_class"][1]
    assert row["oLRP"] == 1.0 and row["num_tp"] == 0


def test_area_ranges():
    gt = make_gt([(1, 1, [0, 0, 10, 10], 0), (1, 1, [0, 0, 99, 99], 0)])  # one small, one large
    dets = [det(1, 1, [0, 0, 10, 10], 0.9)]
    m = detection_metrics(gt, dets)
    assert m["oLRP_s"] == 0.0       # the small object found exactly
    assert m["oLRP_l"] == 1.0       # the large one missed (small det is ignored there, not an FP)
    assert math.isnan(m["oLRP_m"])  # no medium ground truth
    assert m["APm"] == -1.0         # pycocotools' "undefined"


def test_lrp_curve_matches_formula():
    m = ClassMatches(scores=np.array([0.9, 0.8, 0.7, 0.2]), tp=np.array([True, False, True, False]),
                     fp=np.array([False, True, False, True]), ious=np.array([0.6, 0, 0.9, 0]), num_gt=3)
    curve = lrp_curve(m)
    expected = [(0.8 + 2) / 3, (0.8 + 1 + 2) / 4, (0.8 + 0.2 + 1 + 1) / 4, (1.0 + 2 + 1) / 5]
    np.testing.assert_allclose(curve["lrp"], expected, atol=1e-12)
    best = optimal_lrp(m)
    assert best.olrp == pytest.approx(0.75) and best.threshold == 0.7
    assert best.loc == pytest.approx(0.25) and best.fp == pytest.approx(1 / 3) and best.fn == pytest.approx(1 / 3)


def test_bad_inputs_name_the_entry(tmp_path):
    gt = make_gt(BASE_GT)
    with pytest.raises(EvaluationInputError, match="image_id 99"):
        detection_metrics(gt, [det(99, 1, [0, 0, 1, 1], 0.5)])
    with pytest.raises(EvaluationInputError, match="#1 has no 'score'"):
        detection_metrics(gt, [det(1, 1, [0, 0, 1, 1], 0.5), {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(EvaluationInputError, match="category_id 7"):
        detection_metrics(gt, [det(1, 7, [0, 0, 1, 1], 0.5)])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(EvaluationInputError, match="bad.json"):
        detection_metrics(gt, bad)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_gt(tmp_path / "nope.json")


def test_caller_results_not_mutated():
    gt = make_gt(BASE_GT)
    dets = [det(1, 1, [0, 0, 10, 10], 0.9)]
    detection_metrics(gt, dets)
    assert dets == [det(1, 1, [0, 0, 10, 10], 0.9)]
