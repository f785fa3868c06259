"""benchmarks/ap_by_iou.py: AP at each IoU threshold from a comparison's saved detections, on hand-computed cases."""
import json
import math

import pytest

from tests.fixtures.script_loader import load_script

ap_by_iou = load_script("benchmarks/ap_by_iou.py")

# Two classes, one box each. The class-1 detection is the box stretched to 25.6 px high: IoU 20 / 25.6 = 0.78125,
# a true positive at thresholds 0.50-0.75 and a miss at 0.80-0.95; the class-2 detection is exact (IoU 1).
GT = {"images": [{"id": 1, "width": 100, "height": 100}],
      "categories": [{"id": 1, "name": "small"}, {"id": 2, "name": "large"}, {"id": 3, "name": "absent"}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
                      {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 20, 20]}]}
STRETCHED = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 25.6], "score": 0.9}
EXACT = {"image_id": 1, "category_id": 2, "bbox": [50, 50, 20, 20], "score": 0.8}


def _run(root, setup, name, detections, finished=True):
    """A compare_losses.py run folder: config, final checkpoint pointer, saved val detections, result mark."""
    run = root / "runs" / setup / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "ckpt_e0001_i00000010.pth").write_bytes(b"")
    (run / "checkpoints" / "latest").write_text("ckpt_e0001_i00000010.pth")
    (run / "config.yaml").write_text(f"data:\n  root: {root / 'data'}\n  val_split: val\n")
    if detections is not None:
        (run / "eval").mkdir()
        (run / "eval" / "ckpt_e0001_i00000010_val_results.json").write_text(json.dumps(detections))
    if finished:
        (run / "compare_result.json").write_text("{}")


@pytest.fixture
def compare(tmp_path):
    (tmp_path / "data" / "annotations").mkdir(parents=True)
    (tmp_path / "data" / "annotations" / "instances_val.json").write_text(json.dumps(GT))
    return tmp_path


def test_ap_at_each_threshold_follows_the_detections_iou(compare):
    _run(compare, "a", "lr0.001_seed0", [STRETCHED, EXACT])
    _run(compare, "a", "lr0.001_seed1", [EXACT])  # class 1 missed: AP 0 at every threshold
    table, left_out = ap_by_iou.collect(compare, ["a"])
    assert not left_out
    first, second = table["a"]
    assert first["iou"] == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert first["class_AP"]["small"] == pytest.approx([1.0] * 6 + [0.0] * 4)
    assert first["class_AP"]["large"] == pytest.approx([1.0] * 10)
    assert "absent" not in first["class_AP"]  # no ground truth: not averaged in
    assert first["AP"] == pytest.approx([1.0] * 6 + [0.5] * 4)
    assert sum(first["AP"]) / 10 == pytest.approx(0.8)  # COCO AP: (6 × 1 + 4 × 0.5) / 10
    assert second["AP"] == pytest.approx([0.5] * 10)
    summary = ap_by_iou.summarise(table["a"])
    assert summary["AP"] == pytest.approx([0.75] * 6 + [0.5] * 4)
    assert summary["AP_std"][0] == pytest.approx(math.sqrt(0.125)) and summary["AP_std"][-1] == pytest.approx(0.0)
    assert summary["rho"] is None  # one true positive per class: no rank correlation


def test_runs_without_detections_or_unfinished_are_left_out_by_name(compare, capsys):
    _run(compare, "a", "lr0.001_seed0", [STRETCHED, EXACT])
    _run(compare, "a", "lr0.001_seed1", [EXACT], finished=False)
    _run(compare, "torchvision_retinanet", "lr0.001_seed0", None)
    _run(compare, "b", "lr0.001_seed0", [{"image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}])
    out = compare / "report"
    assert ap_by_iou.main(["--compare", str(compare), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "left out a/lr0.001_seed1 (not finished)" in printed
    assert "left out torchvision_retinanet/lr0.001_seed0 (no saved val detections)" in printed
    assert "left out b/lr0.001_seed0 (" in printed  # an unknown image id: the evaluator's one-line reason
    result = json.loads((out / "ap_by_iou.json").read_text())
    assert list(result["summary"]) == ["a"] and result["summary"]["a"]["runs"] == ["lr0.001_seed0"]
    md = (out / "ap_by_iou.md").read_text()
    assert "| a | 1 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 | 0.500 | 0.500 | 0.500 | 0.500 | – |" in md
    assert (out / "ap_by_iou.png").stat().st_size > 0


def test_only_the_best_lr_runs_count_when_the_folder_holds_an_lr_grid(compare):
    _run(compare, "a", "lr0.001_seed0", [STRETCHED, EXACT])
    _run(compare, "a", "lr0.002_seed0", [EXACT])
    table, left_out = ap_by_iou.collect(compare, ["a"])
    assert table == {} and "no best lr" in left_out[0]
    (compare / "results.json").write_text(json.dumps({"setups": {"a": {"best_lr": 0.002}}}))
    table, left_out = ap_by_iou.collect(compare, ["a"])
    assert [r["run"] for r in table["a"]] == ["lr0.002_seed0"] and left_out == ["a/lr0.001_seed0 (not the best lr)"]


def test_a_setup_with_an_unfinished_lr_grid_is_left_out_whole(compare):
    _run(compare, "a", "lr0.001_seed0", [STRETCHED, EXACT])
    _run(compare, "a", "lr0.002_seed0", [EXACT], finished=False)  # the grid's other lr is still training
    (compare / "results.json").write_text(json.dumps({"setups": {"a": {"best_lr": None}}}))  # as --report writes
    table, left_out = ap_by_iou.collect(compare, ["a"])
    assert table == {} and left_out == [f"a (lr grid unfinished: no best lr in {compare / 'results.json'})"]
    (compare / "results.json").unlink()
    table, left_out = ap_by_iou.collect(compare, ["a"])  # two lrs in the folder and no table: no guess either
    assert table == {} and "runs at lr0.001, lr0.002" in left_out[0]


def test_broken_or_missing_run_folders_are_named_not_a_traceback(compare):
    _run(compare, "a", "lr0.001_seed0", [STRETCHED, EXACT])
    (compare / "runs" / "a" / "lr0.001_seed0" / "config.yaml").unlink()
    table, left_out = ap_by_iou.collect(compare, ["a", "typo"])
    assert table == {}
    assert left_out[0].startswith("a/lr0.001_seed0 (FileNotFoundError") and left_out[1] == "typo (no runs)"


def test_the_final_checkpoint_is_found_by_its_pointer_when_its_weights_were_not_kept(compare):
    _run(compare, "a", "lr0.001_seed0", [STRETCHED, EXACT])
    (compare / "runs" / "a" / "lr0.001_seed0" / "checkpoints" / "ckpt_e0001_i00000010.pth").unlink()
    table, left_out = ap_by_iou.collect(compare, ["a"])
    assert not left_out and table["a"][0]["AP"][0] == pytest.approx(1.0)


def test_a_run_without_checkpoints_is_scored_from_its_final_detections(compare):
    """The torchvision row keeps no checkpoint; train_torchvision.py saves its final val detections by name."""
    _run(compare, "torchvision_retinanet", "lr0.001_seed0", None)
    run = compare / "runs" / "torchvision_retinanet" / "lr0.001_seed0"
    for f in ("ckpt_e0001_i00000010.pth", "latest"):
        (run / "checkpoints" / f).unlink()
    table, left_out = ap_by_iou.collect(compare, ["torchvision_retinanet"])
    assert table == {} and "no saved val detections" in left_out[0]  # a run from before they were saved
    (run / "eval").mkdir()
    (run / "eval" / "final_val_results.json").write_text(json.dumps([STRETCHED, EXACT]))
    table, left_out = ap_by_iou.collect(compare, ["torchvision_retinanet"])
    assert not left_out and table["torchvision_retinanet"][0]["AP"] == pytest.approx([1.0] * 6 + [0.5] * 4)


def test_a_folder_that_is_not_a_comparison_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ap_by_iou.parse_args(["--compare", str(tmp_path)])
    assert "not a compare_losses.py output" in capsys.readouterr().err
