"""benchmarks/diagnose_class_ranks.py: per-ground-truth ranks against one class's and all classes' negatives."""
import math
from pathlib import Path

import pytest
import torch

from tests.fixtures.script_loader import load_script

diag = load_script("benchmarks/diagnose_class_ranks.py")


def test_gt_rows_count_negative_pairs_of_own_class_and_of_all_classes():
    # 5 anchors x 2 classes. Anchors 0 and 3 are positive for gt 0 (class 1), anchor 1 background, anchor 2 ignored,
    # anchor 4 positive for gt 2 (class 0): its class-1 pair is a class-1 negative. gt 1 (class 0) has no anchor.
    scores = torch.tensor([[0.9, 0.30],   # positive pair (0, 1) = 0.30; (0, 0) is a class-0 negative
                           [0.5, 0.40],   # background: both negatives
                           [0.99, 0.99],  # ignored: counts for nothing
                           [0.1, 0.20],   # positive pair (3, 1) = 0.20; (3, 0) is a class-0 negative
                           [0.2, 0.50]])  # positive pair (4, 0) = 0.2; (4, 1) is a class-1 negative
    labels = torch.tensor([2, 0, -1, 2, 1])
    matched = torch.tensor([0, -1, -1, 0, 2])
    rows = diag.gt_rows(scores, labels, matched, torch.tensor([1, 0, 0]))
    assert rows[0] == {"class": 1, "has_positive": True, "best_score": pytest.approx(0.30),
                       "neg_above_own": 2,        # class-1 negatives 0.40 (background) and 0.50 (anchor 4)
                       "neg_above_all": 4}        # 0.9, 0.5, 0.40, 0.50 (not the ignored anchor, not 0.1)
    assert rows[1]["has_positive"] is False and math.isnan(rows[1]["best_score"])
    assert rows[1]["neg_above_own"] is None
    assert (rows[2]["best_score"], rows[2]["neg_above_own"], rows[2]["neg_above_all"]) == (pytest.approx(0.2), 2, 4)


def test_covered_needs_the_same_class_and_iou_half():
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    gt_labels = torch.tensor([0, 1, 0])
    det = torch.tensor([[0.0, 0, 10, 12],     # IoU 0.83 with gt 0, same class
                        [20, 20, 30, 30],     # exact box of gt 1 but class 0
                        [40, 40, 50, 70]])    # class 0, IoU 1/3 with gt 2
    assert diag.covered(det, torch.tensor([0, 0, 0]), gt, gt_labels) == [True, False, False]
    assert diag.covered(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), gt, gt_labels) == [False] * 3


def test_summarise_per_class():
    rows = [{"class": 0, "has_positive": True, "best_score": 0.02, "neg_above_own": 0, "neg_above_all": 7,
             "covered": False},
            {"class": 0, "has_positive": True, "best_score": 0.30, "neg_above_own": 2, "neg_above_all": 9,
             "covered": True},
            {"class": 0, "has_positive": False, "best_score": math.nan, "neg_above_own": None,
             "neg_above_all": None, "covered": False},
            {"class": 1, "has_positive": True, "best_score": 0.8, "neg_above_own": 0, "neg_above_all": 0,
             "covered": True}]
    out = diag.summarise(rows, ["a", "b"], score_threshold=0.05, detections_per_image=[1.5, 4.0])
    a = out["a"]
    assert a["gt"] == 3 and a["with_positive"] == pytest.approx(2 / 3)
    assert a["best_above_threshold"] == pytest.approx(0.5) and a["median_best_score"] == pytest.approx(0.16)
    assert a["median_neg_above_own"] == 1 and a["median_neg_above_all"] == 8
    assert a["covered"] == pytest.approx(1 / 3) and a["detections_per_image"] == 1.5
    assert out["b"]["covered"] == 1.0 and out["b"]["gt"] == 1


def test_diagnose_run_end_to_end_maps_boxes_back_to_the_original_image(tmp_path, monkeypatch):
    """A synthetic val split evaluated at half size (scale 0.5), an untrained detector saved as a run folder, and a
    post-processing stand-in that returns each image's ground truth in original pixels: every box must be counted
    once and be covered, which fails if the input-pixel boxes were not mapped back."""
    import json

    import models
    from tests.fixtures.synthetic import write_synthetic_coco
    from training.config import load_config

    ann = json.loads(write_synthetic_coco(tmp_path / "d", "val", num_images=3, size=(96, 128)).read_text())
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    base = Path(__file__).resolve().parents[2] / "configs" / "small" / "bccd_alrp_giou_sb.yaml"
    (run / "config.yaml").write_text(f"_base_: {base}\ndata: {{root: {tmp_path / 'd'}, eval_short_side: 48}}\n")
    cfg = load_config(run / "config.yaml")
    torch.save({"model": models.build_detector(cfg.model, 3).state_dict()}, run / "checkpoints" / "c.pth")
    (run / "checkpoints" / "latest").write_text("c.pth\n")

    label_of = {3: 0, 7: 1, 11: 2}
    truth = {}
    for a in ann["annotations"]:
        x, y, w, h = a["bbox"]
        truth.setdefault(a["image_id"], []).append(([x, y, x + w, y + h], label_of[a["category_id"]]))
    build = models.build_detector

    def build_with_truth_as_detections(*args, **kwargs):
        net = build(*args, **kwargs)

        def postprocess(outputs, anchors, targets):
            boxes, labels = zip(*truth[int(targets[0]["image_id"])])
            return [{"boxes": torch.tensor(boxes, dtype=torch.float32), "scores": torch.ones(len(labels)),
                     "labels": torch.tensor(labels)}]
        net.postprocess = postprocess
        return net

    monkeypatch.setattr(models, "build_detector", build_with_truth_as_detections)
    out = diag.diagnose_run(run, [], max_images=None)
    per_class = {}
    for a in ann["annotations"]:
        per_class[a["category_id"]] = per_class.get(a["category_id"], 0) + 1
    assert {name: s["gt"] for name, s in out.items()} == {f"class{c}": per_class.get(c, 0) for c in (3, 7, 11)}
    for name, stats in out.items():
        if stats["gt"]:
            assert stats["covered"] == 1.0, name
            assert 0.0 <= stats["with_positive"] <= 1.0
    assert sum(s["detections_per_image"] for s in out.values()) == pytest.approx(len(ann["annotations"]) / 3)


def test_a_folder_that_is_not_a_run_gets_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        diag.main(["--run", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "is not a finished run folder" in capsys.readouterr().err
