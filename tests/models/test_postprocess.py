"""Post-processor on hand-made logits: threshold, per-level top-k, per-class NMS, clipping, mapping to originals."""
import pytest
import torch

from models.box_coder import BoxCoder
from models.postprocess import PostProcessor, image_geometry, to_original

NEG = -20.0  # logit of a "no" score


def make(**kw):
    args = dict(coder=BoxCoder(), score_threshold=0.05, pre_nms_topk=1000, nms_iou=0.5, max_detections=100)
    args.update(kw)
    return PostProcessor(**args)


ANCHORS = torch.tensor([
    [10.0, 10, 30, 30],  # level 0
    [12, 10, 32, 30],  # level 0, IoU 0.82 with anchor 0
    [60, 60, 100, 100],  # level 1
    [90, 0, 130, 40],  # level 1, crosses the right border of a 120-wide input
])
COUNTS = [2, 2]


def logits_for(entries, k=3):
    logits = torch.full((1, 4, k), NEG)
    for anchor, cls, prob in entries:
        logits[0, anchor, cls] = torch.logit(torch.tensor(prob))
    return logits


def run(post, logits, target):
    return post(logits, torch.zeros(1, 4, 4), ANCHORS, COUNTS, [target])[0]


TARGET = {"orig_size": (100, 120), "scale": 1.0, "image_id": 1}


def test_threshold_nms_and_classes():
    # anchors 0 and 1 overlap: same class -> NMS keeps the higher; other class survives; 0.04 is under threshold
    logits = logits_for([(0, 1, 0.9), (1, 1, 0.8), (1, 2, 0.7), (2, 0, 0.04), (2, 2, 0.3)])
    det = run(make(), logits, TARGET)
    assert det["labels"].tolist() == [1, 2, 2]
    torch.testing.assert_close(det["scores"], torch.tensor([0.9, 0.7, 0.3]))
    torch.testing.assert_close(det["boxes"], ANCHORS[[0, 1, 2]])


def test_threshold_is_strict_and_max_detections_applies():
    logits = logits_for([(0, 0, 0.9), (2, 1, 0.6), (3, 2, 0.5)])
    det = run(make(max_detections=2), logits, TARGET)
    assert det["scores"].tolist() == torch.tensor([0.9, 0.6]).tolist()
    det = run(make(score_threshold=0.9), logits, TARGET)
    assert det["scores"].numel() == 0 and det["boxes"].shape == (0, 4)


def test_top_k_is_per_level():
    logits = logits_for([(0, 0, 0.9), (0, 1, 0.8), (2, 0, 0.3), (3, 1, 0.2)])
    det = run(make(pre_nms_topk=1), logits, TARGET)
    # level 0 keeps only its best pair, level 1 only its best, although 0.8 beats both level-1 scores
    assert det["scores"].tolist() == torch.tensor([0.9, 0.3]).tolist()


def test_top_k_by_anchor_keeps_every_class_of_the_best_anchors():
    # level 0: anchor 0 (best class 0.9) beats anchor 1 (0.8); with k = 1 by anchor, anchor 0 keeps both its
    # classes (0.9 and 0.06 > 0.05) while anchor 1 is gone; by pair only the 0.9 pair survives
    logits = logits_for([(0, 0, 0.9), (0, 2, 0.06), (1, 1, 0.8), (2, 0, 0.3), (3, 1, 0.2)])
    det = run(make(pre_nms_topk=1, topk_unit="anchor"), logits, TARGET)
    assert sorted(det["scores"].tolist()) == pytest.approx([0.06, 0.3, 0.9])
    assert sorted(det["labels"].tolist()) == [0, 0, 2]
    det = run(make(pre_nms_topk=1), logits, TARGET)
    assert det["scores"].tolist() == torch.tensor([0.9, 0.3]).tolist()
    # a large k gives the same detections either way
    assert run(make(topk_unit="anchor"), logits, TARGET)["scores"].tolist() == run(make(), logits, TARGET)[
        "scores"].tolist()


def test_level_score_thresholds_of_the_ablation_code():
    # 0.01 on the first level, 0 on the last: a 0.005 score survives on the last level only, where every pair
    # in the top k passes (the 4 "no" pairs of level 1 too, at sigmoid(-20))
    logits = logits_for([(0, 0, 0.02), (1, 1, 0.005), (2, 0, 0.005), (3, 2, 0.0001)])
    det = run(make(level_score_thresholds=[0.01, 0.0]), logits, TARGET)
    assert len(det["scores"]) == 1 + 2 * 3
    assert sorted(det["scores"].tolist())[4:] == pytest.approx([0.0001, 0.005, 0.02])
    with pytest.raises(ValueError, match="level_score_thresholds"):
        run(make(level_score_thresholds=[0.01]), logits, TARGET)
    with pytest.raises(ValueError, match="topk_unit"):
        make(topk_unit="class")


def test_boxes_are_clipped_and_mapped_to_original_pixels():
    logits = logits_for([(3, 0, 0.9)])  # anchor (90, 0, 130, 40) in a 120 x 100 (w x h) input
    det = run(make(), logits, TARGET)
    torch.testing.assert_close(det["boxes"], torch.tensor([[90.0, 0, 120, 40]]))
    # (sy, sx) = (0.5, 2): original 200 x 60 (h x w) -> input 100 x 120; x / 2, y / 0.5
    det = run(make(), logits, {"orig_size": (200, 60), "scale": (0.5, 2.0)})
    torch.testing.assert_close(det["boxes"], torch.tensor([[45.0, 0, 60, 80]]))
    # float scale 0.5: original 200 x 240 -> input 100 x 120
    det = run(make(), logits, {"orig_size": torch.tensor([200, 240]), "scale": 0.5})
    torch.testing.assert_close(det["boxes"], torch.tensor([[180.0, 0, 240, 80]]))
    # explicit input size wins over orig_size * scale
    det = run(make(), logits, {"orig_size": (100, 120), "scale": 1.0, "size": (100, 100)})
    torch.testing.assert_close(det["boxes"], torch.tensor([[90.0, 0, 100, 40]]))


def test_deltas_are_decoded():
    deltas = torch.zeros(1, 4, 4)
    deltas[0, 2] = torch.tensor([1.0, 0, 0, 0])  # shift by 0.1 * width = 4 px
    det = make()(logits_for([(2, 0, 0.9)]), deltas, ANCHORS, COUNTS, [TARGET])[0]
    torch.testing.assert_close(det["boxes"], torch.tensor([[64.0, 60, 104, 100]]))


def test_image_geometry_reads_scales_and_sizes():
    assert image_geometry({"orig_size": (480, 640), "scale": (512 / 480, 512 / 640)}) == (
        (512 / 480, 0.8), (512, 512), (480, 640))


def test_to_original_undoes_a_float_or_per_axis_scale():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    scale = image_geometry({"scale": 0.5, "orig_size": (200, 100)})[0]
    assert to_original(boxes, scale).tolist() == [[20, 40, 60, 120]]
    per_axis = to_original(boxes, image_geometry({"scale": (2.0, 0.5), "orig_size": (10, 100)})[0])  # (sy, sx)
    assert per_axis.tolist() == [[20, 10, 60, 30]]
