"""Test-time augmentation: flips of padded batches, boxes mapped back from flipped and rescaled views, the merge rule
(concatenate all views, one per-class NMS, top k) on hand-built candidates, and the whole rule on a real model."""
import pytest
import torch
import torch.nn.functional as F

from data.loader import collate
from models import ModelConfig, build_detector
from models.tta import MultiScaleFlipTTA, flip_images, keep_smaller_than, merge_views, unflip_boxes, view_candidates

SMALL = dict(backbone={"name": "resnet18", "norm": "gn", "frozen_stages": 0}, fpn={"channels": 64},
             head={"channels": 64, "num_convs": 1, "norm": "gn"}, postprocess={"score_threshold": 0.0})


def test_flip_mirrors_only_the_unpadded_columns():
    images = torch.arange(2 * 3 * 2 * 6, dtype=torch.float32).reshape(2, 3, 2, 6)
    flipped = flip_images(images, [4, 6])
    assert flipped[0, 0, 0].tolist() == [3.0, 2, 1, 0, 4, 5]  # columns 4, 5 are padding: unchanged
    assert flipped[1, 2, 1].tolist() == images[1, 2, 1].flip(0).tolist()
    torch.testing.assert_close(flip_images(flipped, [4, 6]), images)


def test_unflip_boxes_by_hand():
    boxes = torch.tensor([[10.0, 20, 30, 40], [0, 0, 100, 5]])
    torch.testing.assert_close(unflip_boxes(boxes, 100), torch.tensor([[70.0, 20, 90, 40], [0, 0, 100, 5]]))
    torch.testing.assert_close(unflip_boxes(unflip_boxes(boxes, 100), 100), boxes)


class FixedCandidates(torch.nn.Module):
    """Stand-in detector: one candidate box [10, 20, 30, 40] (input pixels) of class 2, score 0.9, per image."""

    def forward(self, images):
        self.seen = images
        return {"cls_logits": images.new_zeros(len(images), 1, 1)}

    def anchors(self, images):
        return None

    def candidates(self, outputs, anchors, targets):
        return [(torch.tensor([[10.0, 20, 30, 40]]), torch.tensor([0.9]), torch.tensor([2])) for _ in targets]


def test_a_flipped_view_maps_back_to_original_pixels_by_hand():
    target = {"image_id": 7, "scale": 0.5, "orig_size": (120, 200), "size": (60, 100)}
    (boxes, scores, labels), = view_candidates(FixedCandidates(), torch.zeros(1, 3, 64, 128), [target], flip=True)
    # mirrored in the 100-pixel-wide view: x1 = 100 - 30, x2 = 100 - 10; then / 0.5 into original pixels
    torch.testing.assert_close(boxes, torch.tensor([[140.0, 40, 180, 80]]))
    assert scores.tolist() == [pytest.approx(0.9)] and labels.tolist() == [2]
    (plain, _, _), = view_candidates(FixedCandidates(), torch.zeros(1, 3, 64, 128), [target], flip=False)
    torch.testing.assert_close(plain, torch.tensor([[20.0, 40, 60, 80]]))


def test_merge_rule_on_a_hand_built_case():
    view_a = (torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]), torch.tensor([0.9, 0.4]), torch.tensor([0, 1]))
    view_b = (torch.tensor([[1.0, 0, 11, 10],  # IoU 9/11 > 0.5 with view A's class-0 box: suppressed (0.8 < 0.9)
                            [0, 0, 10, 10],  # same box, other class: kept
                            [50, 50, 70, 60],  # IoU 0.5 with A's class-1 box, not > 0.5: both kept
                            [95, 95, 130, 130]]),  # reaches past the 100 x 100 image: clipped
              torch.tensor([0.8, 0.3, 0.7, 0.6]), torch.tensor([0, 2, 1, 1]))
    det = merge_views([view_a, view_b], (100, 100), nms_iou=0.5, max_detections=100)
    assert det["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6, 0.4, 0.3])
    assert det["labels"].tolist() == [0, 1, 1, 1, 2]
    torch.testing.assert_close(det["boxes"][2], torch.tensor([95.0, 95, 100, 100]))
    top2 = merge_views([view_a, view_b], (100, 100), nms_iou=0.5, max_detections=2)
    assert top2["scores"].tolist() == pytest.approx([0.9, 0.7])


def test_size_limit_keeps_boxes_whose_shorter_side_is_under_it():
    cands = (torch.tensor([[0.0, 0, 10, 50], [0, 0, 20, 20], [0, 0, 30, 5]]), torch.ones(3), torch.zeros(3).long())
    assert keep_smaller_than(cands, 20)[0].tolist() == [[0.0, 0, 10, 50], [0, 0, 30, 5]]
    assert len(keep_smaller_than(cands, 0)[0]) == 3


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_detector(ModelConfig(**SMALL), num_classes=3).eval()


def _view(image: torch.Tensor, scale: float, orig_hw):
    return image, {"image_id": 1, "scale": scale, "orig_size": orig_hw, "size": tuple(image.shape[1:])}


def test_flipped_view_of_a_real_model_equals_detecting_on_the_mirrored_image_mapped_back(model):
    torch.manual_seed(1)
    image = torch.randn(3, 100, 150)  # padded to 128 x 256 by collate
    images, targets = collate([_view(image, 1.0, (100, 150))])
    flipped, = view_candidates(model, images, targets, flip=True)
    mirrored_images, _ = collate([_view(image.flip(-1), 1.0, (100, 150))])
    direct, = view_candidates(model, mirrored_images, targets, flip=False)
    assert len(flipped[0]) > 100
    torch.testing.assert_close(flipped[0], unflip_boxes(direct[0], 150))
    torch.testing.assert_close(flipped[1], direct[1])
    assert torch.equal(flipped[2], direct[2])


def test_single_view_tta_equals_the_plain_postprocessor_and_views_are_merged(model):
    torch.manual_seed(2)
    image = torch.randn(3, 100, 150)
    base = collate([_view(image, 1.0, (100, 150))])
    with torch.no_grad():
        plain = model.postprocess(model(base[0]), model.anchors(base[0]), base[1])[0]
    cpu = torch.device("cpu")
    single, targets = MultiScaleFlipTTA(flip=False)(model, [base], cpu)
    assert targets is base[1]
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(single[0][key], plain[key])
    half = collate([_view(F.interpolate(image[None], size=(50, 75), mode="bilinear")[0], 0.5, (100, 150))])
    merged, _ = MultiScaleFlipTTA(flip=True)(model, [base, half], cpu)
    assert len(merged[0]["scores"]) == 100 and bool((merged[0]["scores"].diff() <= 0).all())
    assert merged[0]["boxes"][:, 2].max() <= 150 and merged[0]["boxes"][:, 3].max() <= 100
    with pytest.raises(ValueError, match="disagree"):
        other = (half[0], [dict(half[1][0], image_id=2)])
        MultiScaleFlipTTA(flip=False)(model, [base, other], cpu)
    with pytest.raises(ValueError, match="2 max sizes for 1 scales"):
        MultiScaleFlipTTA(flip=False, max_sizes=[0, 96])(model, [base], cpu)
