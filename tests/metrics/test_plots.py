"""Plot helpers: the LRP-at-threshold lookup behind the overall curve, and box drawing."""
import numpy as np

from alrp.metrics.lrp import ClassMatches, lrp_curve
from alrp.metrics.plots import draw_boxes, lrp_at_thresholds


def test_lrp_at_thresholds_keeps_scores_at_or_above():
    m = ClassMatches(scores=np.array([0.9, 0.8, 0.7, 0.2]), tp=np.array([True, False, True, False]),
                     fp=np.array([False, True, False, True]), ious=np.array([0.6, 0, 0.9, 0]), num_gt=3)
    lrp = lrp_curve(m)["lrp"]
    got = lrp_at_thresholds(m, np.array([1.0, 0.95, 0.9, 0.85, 0.7, 0.5, 0.0]))
    np.testing.assert_allclose(got, [1, 1, lrp[0], lrp[0], lrp[2], lrp[2], lrp[3]])
    empty = ClassMatches(np.zeros(0), np.zeros(0, bool), np.zeros(0, bool), np.zeros(0), 2)
    np.testing.assert_array_equal(lrp_at_thresholds(empty, np.array([0.0, 0.5])), [1, 1])


def test_draw_boxes_marks_gt_green_and_detections_red():
    image = np.zeros((50, 60, 3), np.uint8)
    out = draw_boxes(image, [[5, 5, 20, 20]], [{"bbox": [30, 10, 20, 30], "category_id": 1, "score": 0.8}], {1: "a"})
    assert image.sum() == 0  # input untouched
    assert tuple(out[5, 15]) == (0, 200, 0)  # top edge of the GT box (BGR)
    assert tuple(out[25, 30]) == (0, 0, 255)  # left edge of the detection
