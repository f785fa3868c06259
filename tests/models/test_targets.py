"""Loss targets: flattening order, pair targets, positive boxes/deltas, through the detector with real assignment."""
import pytest
import torch

from models import LossTargets, ModelConfig, build_detector
from models.assigners import Assignment
from models.box_coder import BoxCoder
from models.targets import build_loss_targets, pair_targets


def test_pair_targets_by_hand():
    labels = torch.tensor([[2, 0, -1, 1], [0, 3, 0, 0]])
    expected = torch.tensor([
        [[0, 1, 0], [0, 0, 0], [-1, -1, -1], [1, 0, 0]],
        [[0, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]],
    ])
    assert torch.equal(pair_targets(labels, 3), expected)


def test_build_loss_targets_order_and_values():
    coder = BoxCoder()
    anchors = torch.tensor([[0.0, 0, 10, 10], [10, 0, 20, 10], [0, 10, 10, 20], [10, 10, 20, 20]])
    logits = torch.randn(2, 4, 3, requires_grad=True)
    deltas = torch.randn(2, 4, 4, requires_grad=True)
    assignments = [
        Assignment(labels=torch.tensor([2, 0, -1, 1]), matched_gt=torch.tensor([1, -1, -1, 0])),
        Assignment(labels=torch.tensor([0, 3, 0, 0]), matched_gt=torch.tensor([-1, 0, -1, -1])),
    ]
    gt = [torch.tensor([[1.0, 1, 9, 9], [2, 2, 12, 12]]), torch.tensor([[11.0, 0, 19, 12]])]
    lt = build_loss_targets(logits, deltas, anchors, assignments, gt, coder)
    assert isinstance(lt, LossTargets)
    assert lt.logits.shape == lt.targets.shape == (24,) and lt.targets.dtype == torch.int64
    assert lt.num_pos == int((lt.targets == 1).sum()) == 3
    # positive pairs, row-major: (img 0, anchor 0, class 1), (img 0, anchor 3, class 0), (img 1, anchor 1, class 2)
    pos_pairs = (lt.targets == 1).nonzero().flatten().tolist()
    assert pos_pairs == [0 * 12 + 0 * 3 + 1, 0 * 12 + 3 * 3 + 0, 1 * 12 + 1 * 3 + 2]
    torch.testing.assert_close(lt.logits[pos_pairs], logits.detach()[[0, 0, 1], [0, 3, 1], [1, 0, 2]])
    torch.testing.assert_close(lt.pos_gt_boxes, torch.stack([gt[0][1], gt[0][0], gt[1][0]]))
    torch.testing.assert_close(lt.pos_pred_deltas, deltas.detach()[[0, 0, 1], [0, 3, 1]])
    pos_anchors = anchors[[0, 3, 1]]
    torch.testing.assert_close(lt.pos_pred_boxes, coder.decode(lt.pos_pred_deltas, pos_anchors))
    torch.testing.assert_close(lt.pos_gt_deltas, coder.encode(lt.pos_gt_boxes, pos_anchors))
    assert (lt.targets.view(2, 4, 3)[0, 2] == -1).all()
    (lt.logits.sum() + lt.pos_pred_boxes.sum()).backward()
    assert logits.grad is not None and deltas.grad[0, 0].abs().sum() > 0 and deltas.grad[0, 1].abs().sum() == 0


@pytest.fixture(scope="module")
def tiny_detector():
    cfg = ModelConfig(backbone={"name": "resnet18", "norm": "gn", "frozen_stages": 0},
                      fpn={"channels": 64}, head={"channels": 64, "num_convs": 1, "norm": "gn"})
    return build_detector(cfg, num_classes=4)


def test_detector_loss_targets_are_consistent(tiny_detector):
    images = torch.randn(3, 3, 128, 128)
    outputs = tiny_detector(images)
    anchors = tiny_detector.anchors(images)
    targets = [
        {"boxes": torch.tensor([[10.0, 20, 60, 90], [70, 70, 120, 110]]), "labels": torch.tensor([3, 1]),
         "crowd_boxes": torch.tensor([[0.0, 100, 60, 128]]), "image_id": 1},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "image_id": 2},  # no boxes
        {"boxes": [[30.0, 30, 100, 100]], "labels": [0], "image_id": 3},  # lists are accepted too
    ]
    lt = tiny_detector.loss_targets(outputs, anchors, targets)
    k = 4
    t = lt.targets.view(3, -1, k)
    assert lt.logits.shape == (3 * anchors.boxes.shape[0] * k,)
    assert lt.num_pos == int((lt.targets == 1).sum()) > 0
    assert (t[1] == 1).sum() == 0 and (t[1] == -1).sum() == 0  # image without boxes: all background
    assert (t[0] == -1).any()  # in-between IoUs and the crowd box give ignored anchors
    assert ((t == 1).sum(-1) <= 1).all()  # one positive pair per positive anchor
    # ignored anchors are ignored for every class
    assert ((t == -1).any(-1) == (t == -1).all(-1)).all()
    img, anc, cls = (t == 1).nonzero(as_tuple=True)
    assert cls[img == 0].unique().tolist() == [1, 3] and cls[img == 2].unique().tolist() == [0]
    coder = tiny_detector.box_coder
    torch.testing.assert_close(coder.decode(lt.pos_gt_deltas, anchors.boxes[anc]), lt.pos_gt_boxes, atol=1e-3, rtol=0)
    torch.testing.assert_close(lt.pos_pred_deltas, outputs["box_deltas"][img, anc])
    assert lt.pos_pred_boxes.requires_grad and lt.logits.requires_grad


def test_bad_labels_are_reported_with_the_image_id(tiny_detector):
    images = torch.randn(1, 3, 128, 128)
    outputs = tiny_detector(images)
    bad = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([4]), "image_id": 17}]
    with pytest.raises(ValueError, match="image_id 17"):
        tiny_detector.loss_targets(outputs, tiny_detector.anchors(images), bad)
    wrong_shape = [{"boxes": torch.tensor([0.0, 0, 10]), "labels": torch.tensor([0]), "image_id": 18}]
    with pytest.raises(ValueError, match="image_id 18"):
        tiny_detector.loss_targets(outputs, tiny_detector.anchors(images), wrong_shape)
