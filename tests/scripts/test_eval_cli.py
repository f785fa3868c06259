"""eval.py: mode 1 (files) fully, mode 2 (config + checkpoint) on a small saved checkpoint; errors exit 2."""
import json
import os
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

import eval as eval_cli
from alrp.metrics import METRIC_KEYS, EvaluationInputError, detection_metrics, load_gt
from tests.fixtures.bad_inputs import read_only_dir

REPO = Path(__file__).resolve().parents[2]


def make_dataset(folder: Path, n_images: int = 4, size: int = 96) -> tuple[Path, Path, list]:
    """Tiny COCO set: each image has one bright square (cat 3) and odd images a second one (cat 7)."""
    (folder / "images").mkdir(parents=True)
    images, anns, dets = [], [], []
    rng = np.random.default_rng(0)
    for i in range(1, n_images + 1):
        img = np.zeros((size, size, 3), np.uint8)
        x, y = 10 + 5 * i, 20
        img[y:y + 30, x:x + 30] = (255, 255, 255)
        cv2.imwrite(str(folder / "images" / f"im{i}.jpg"), img)
        images.append({"id": i, "file_name": f"im{i}.jpg", "width": size, "height": size})
        anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 3, "bbox": [x, y, 30, 30], "area": 900,
                     "iscrowd": 0})
        dets.append({"image_id": i, "category_id": 3, "bbox": [x + 1, y + 2, 30, 28], "score": float(rng.random())})
        dets.append({"image_id": i, "category_id": 3, "bbox": [60, 60, 20, 20], "score": float(rng.random())})
        if i % 2:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 7, "bbox": [5, 60, 20, 20],
                         "area": 400, "iscrowd": 0})
            dets.append({"image_id": i, "category_id": 7, "bbox": [6, 61, 20, 20], "score": 0.9})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 3, "name": "square"}, {"id": 7, "name": "small square"}, {"id": 9, "name": "none"}]}
    (folder / "gt.json").write_text(json.dumps(gt))
    (folder / "dets.json").write_text(json.dumps(dets))
    return folder / "gt.json", folder / "dets.json", dets


def test_mode1_json_out_table_plots_and_visualize(tmp_path, capsys):
    gt, dets, _ = make_dataset(tmp_path)
    out, plots = tmp_path / "out" / "m.json", tmp_path / "plots"
    rc = eval_cli.main(["--gt", str(gt), "--detections", str(dets), "--json-out", str(out), "--plots", str(plots),
                        "--visualize", "2", "--image-dir", str(tmp_path / "images")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "oLRP" in printed and "square (3)" in printed and "no ground truth" in printed
    metrics = json.loads(out.read_text())
    assert list(metrics) == list(METRIC_KEYS)
    direct = detection_metrics(load_gt(gt), dets)
    assert metrics["AP50"] == pytest.approx(direct["AP50"]) and metrics["oLRP"] == pytest.approx(direct["oLRP"])
    assert set(metrics["per_class"]) == {"3", "7", "9"} and metrics["per_class"]["9"] is None
    assert metrics["per_class"]["7"]["oLRP_FP"] == 0.0
    names = {p.name for p in plots.iterdir() if p.is_file()}
    assert {"pr_overall.png", "lrp_overall.png", "pr_3_square.png", "lrp_7_small-square.png"} <= names
    assert not any(n.startswith(("pr_9", "lrp_9")) for n in names)  # no GT: no curve
    for p in plots.glob("*.png"):
        assert p.stat().st_size > 1000 and cv2.imread(str(p)) is not None
    vis = sorted((plots / "vis").glob("vis_*.jpg"))
    assert [p.name for p in vis] == ["vis_1.jpg", "vis_2.jpg"]
    drawn = cv2.imread(str(vis[0]))
    assert drawn.shape == (96, 96, 3) and (drawn[:, :, 1] > 150).any()  # green GT boxes drawn


def test_mode1_empty_detections(tmp_path, capsys):
    gt, dets, _ = make_dataset(tmp_path)
    dets.write_text("[]")
    out = tmp_path / "m.json"
    assert eval_cli.main(["--gt", str(gt), "--detections", str(dets), "--json-out", str(out),
                          "--plots", str(tmp_path / "p")]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["AP"] == 0.0 and metrics["oLRP"] == 1.0 and metrics["oLRP_loc"] is None
    assert (tmp_path / "p" / "lrp_overall.png").stat().st_size > 0


@pytest.mark.parametrize("problem", ["missing_gt", "missing_dets", "bad_json", "unknown_image", "not_a_list",
                                     "string_category"])
def test_mode1_bad_inputs_exit_2_naming_the_file(tmp_path, capsys, problem):
    gt, dets, _ = make_dataset(tmp_path)
    expected = {"missing_gt": "nope.json", "missing_dets": "nodets.json", "bad_json": "dets.json",
                "unknown_image": "image_id 42", "not_a_list": "dets.json",
                "string_category": "category_id '3' is not in the ground truth (a string; the category ids are "
                                   "numbers, e.g. 3)"}[problem]
    if problem == "missing_gt":
        gt = tmp_path / "nope.json"
    elif problem == "missing_dets":
        dets = tmp_path / "nodets.json"
    elif problem == "bad_json":
        dets.write_text("[{")
    elif problem == "unknown_image":
        dets.write_text(json.dumps([{"image_id": 42, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}]))
    elif problem == "string_category":
        dets.write_text(json.dumps([{"image_id": 1, "category_id": "3", "bbox": [0, 0, 1, 1], "score": 0.5}]))
    else:
        dets.write_text("{}")
    assert eval_cli.main(["--gt", str(gt), "--detections", str(dets)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    if problem == "unknown_image":
        assert "dets.json: detection #0" in err  # the file is named, not just "results"


@pytest.mark.parametrize("problem,expected", [
    ("unknown_image", "gt.json: annotation id 1 refers to unknown image_id 77"),
    ("unknown_category", "gt.json: annotation id 1 refers to unknown category_id 5"),
    ("bad_bbox", "gt.json: annotation id 1 has a malformed bbox"),
    ("no_image_id", "gt.json: image #0 is not an object"),
    ("duplicate_image", "gt.json: duplicate image id 2"),
])
def test_mode1_malformed_ground_truth_exit_2_naming_file_and_id(tmp_path, capsys, problem, expected):
    gt, dets, _ = make_dataset(tmp_path)
    data = json.loads(gt.read_text())
    ann = data["annotations"][0]
    if problem == "unknown_image":
        ann["image_id"] = 77
    elif problem == "unknown_category":
        ann["category_id"] = 5
    elif problem == "bad_bbox":
        ann["bbox"] = [1, 2, "3", 4]
    elif problem == "no_image_id":
        data["images"][0] = 17
    else:
        data["images"][0]["id"] = 2
    gt.write_text(json.dumps(data))
    assert eval_cli.main(["--gt", str(gt), "--detections", str(dets)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


@pytest.mark.parametrize("bbox,side", [([10, 10, -20, 30], "width"), ([10, 10, 30, -5], "height")])
def test_detection_with_negative_width_or_height_is_rejected_naming_it(tmp_path, capsys, bbox, side):
    """pycocotools would silently ignore an inverted box (negative area is outside every area range), so a
    top-scoring inverted box left AP unchanged; it is an input error, as a NaN coordinate is."""
    gt, dets_path, dets = make_dataset(tmp_path)
    dets.append({"image_id": 1, "category_id": 3, "bbox": bbox, "score": 2.0})
    dets_path.write_text(json.dumps(dets))
    assert eval_cli.main(["--gt", str(gt), "--detections", str(dets_path)]) == 2
    err = capsys.readouterr().err
    assert f"dets.json: detection #{len(dets) - 1}: bbox has a negative {side}" in err and "Traceback" not in err
    with pytest.raises(EvaluationInputError, match=f"negative {side}"):
        detection_metrics(load_gt(gt), dets)


def test_zero_width_detection_counts_as_false_positive(tmp_path):
    gt, _, dets = make_dataset(tmp_path)
    base = detection_metrics(load_gt(gt), dets)
    flat = detection_metrics(load_gt(gt), dets + [{"image_id": 1, "category_id": 3, "bbox": [10, 10, 0, 30],
                                                     "score": 2.0}])
    assert flat["per_class"][3]["num_fp"] >= 1 and flat["AP"] < base["AP"]


@pytest.mark.parametrize("option,where", [("--json-out", "folder"), ("--json-out", "read_only"),
                                           ("--json-out", "under_a_file"), ("--plots", "file"),
                                           ("--plots", "read_only")])
def test_unwritable_outputs_are_one_line_errors_naming_the_path(tmp_path, capsys, option, where):
    gt, dets, _ = make_dataset(tmp_path)
    target = {"folder": tmp_path, "read_only": read_only_dir(tmp_path) / "out" if where == "read_only" else None,
              "under_a_file": gt / "m.json", "file": gt}[where]
    before = gt.read_bytes()
    assert eval_cli.main(["--gt", str(gt), "--detections", str(dets), option, str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option} {target}: ") and len(err.strip().splitlines()) == 1, err
    assert gt.read_bytes() == before


def test_full_disk_while_writing_json_out_says_no_space_left(tmp_path, capsys):
    if not (Path("/dev/full").exists() and os.access("/dev", os.W_OK)):
        pytest.skip("needs /dev/full and a writable /dev (the start-up check probes the folder)")
    gt, dets, _ = make_dataset(tmp_path)
    assert eval_cli.main(["--gt", str(gt), "--detections", str(dets), "--json-out", "/dev/full"]) == 2
    assert capsys.readouterr().err == "error: --json-out /dev/full: no space left on device\n"


def test_ground_truth_without_iscrowd_area_or_file_names(tmp_path):
    """Box-only COCO files often omit iscrowd/area (and eval needs no file names): same metrics as with them."""
    gt, dets, _ = make_dataset(tmp_path)
    full = detection_metrics(load_gt(gt), dets)
    data = json.loads(gt.read_text())
    for ann in data["annotations"]:
        del ann["iscrowd"], ann["area"]  # area 900/400 = bbox w*h here, so the metrics must not change
    for img in data["images"]:
        del img["file_name"], img["width"], img["height"]
    gt.write_text(json.dumps(data))
    bare = detection_metrics(load_gt(gt), dets)
    for key in ("AP", "AP50", "APs", "APm", "oLRP", "oLRP_loc", "oLRP_s", "rho"):
        assert bare[key] == pytest.approx(full[key], nan_ok=True), key


def test_repeated_set_flags_add_up():
    args = eval_cli.parse_args(["--config", "c.yaml", "--checkpoint", "k.pth", "--set", "a.b=1", "c=2",
                                "--set", "d.e=3"])
    assert args.set == ["a.b=1", "c=2", "d.e=3"]


def test_argument_errors():
    for argv in ([], ["--gt", "a.json"], ["--config", "c.yaml"], ["--gt", "a", "--detections", "b", "--config", "c"],
                 ["--gt", "a", "--detections", "b", "--visualize", "2"],
                 ["--gt", "a", "--detections", "b", "--tta-flip"]):
        with pytest.raises(SystemExit) as info:
            eval_cli.parse_args(argv)
        assert info.value.code == 2


def test_subprocess_missing_file_no_traceback(tmp_path):
    gt, _, _ = make_dataset(tmp_path)
    proc = subprocess.run([sys.executable, str(REPO / "eval.py"), "--gt", str(gt), "--detections",
                           str(tmp_path / "missing.json")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "missing.json" in proc.stderr and "Traceback" not in proc.stderr


def test_mode2_missing_config_and_checkpoint(tmp_path, capsys):
    assert eval_cli.main(["--config", str(tmp_path / "none.yaml"), "--checkpoint", str(tmp_path / "k.pth")]) == 2
    assert "none.yaml" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 1\n")
    assert eval_cli.main(["--config", str(cfg), "--checkpoint", str(tmp_path / "k.pth")]) == 2
    assert "k.pth" in capsys.readouterr().err
    assert eval_cli.main(["--config", str(cfg), "--checkpoint", str(cfg), "--set", "train.lrr=1"]) == 2
    assert "train.lrr" in capsys.readouterr().err


def test_mode2_config_and_checkpoint(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import models
    from training.config import load_config

    root = tmp_path / "ds"
    gt, _, _ = make_dataset(root)
    (root / "annotations").mkdir()
    gt.rename(root / "annotations" / "instances_val2017.json")
    (root / "images").rename(root / "val2017")
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(
        f"device: cpu\noutput_dir: {tmp_path / 'runs'}\n"
        f"data: {{root: {root}, num_workers: 0, pin_memory: false, eval_short_side: 128, eval_max_size: 128}}\n"
        "model:\n  backbone: {name: resnet18, norm: gn, frozen_stages: 0}\n  fpn: {channels: 32}\n"
        "  head: {channels: 32, num_convs: 1, norm: gn}\n  postprocess: {score_threshold: 0.0, max_detections: 20}\n"
        "eval: {batch_size: 2}\n")
    cfg = load_config(cfg_path)
    torch.manual_seed(0)
    ckpt = tmp_path / "k.pth"
    torch.save({"model": models.build_detector(cfg.model, 3).state_dict()}, ckpt)
    out = tmp_path / "m.json"
    rc = eval_cli.main(["--config", str(cfg_path), "--checkpoint", str(ckpt), "--json-out", str(out),
                        "--visualize", "1", "--vis-dir", str(tmp_path / "vis"), "--submission", str(tmp_path / "v.zip")])
    assert rc == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "runs" / "tiny" / "eval" / "k_val_results.json").read_text())
    assert results and {r["category_id"] for r in results} <= {3, 7, 9}
    with zipfile.ZipFile(tmp_path / "v.zip") as zf:  # the server's format works on val too
        assert json.loads(zf.read("detections_val2017_tiny_results.json")) == results
    assert list(json.loads(out.read_text())) == list(METRIC_KEYS)
    assert (tmp_path / "vis" / "vis_1.jpg").stat().st_size > 0
    # test-time augmentation: one scale without flip is the plain evaluation; 2 scales + flip merge 4 views
    base = ["--config", str(cfg_path), "--checkpoint", str(ckpt)]
    assert eval_cli.main([*base, "--tta-scales", "128"]) == 0
    single = json.loads((tmp_path / "runs" / "tiny" / "eval" / "k_val_results.json").read_text())
    assert [(r["image_id"], r["category_id"]) for r in single] == [(r["image_id"], r["category_id"]) for r in results]
    assert [r["score"] for r in single] == pytest.approx([r["score"] for r in results], abs=1e-6)
    tta = ["--tta-scales", "128", "96", "--tta-flip", "--set", "eval.tta_max_sizes=[0,50]"]
    assert eval_cli.main([*base, *tta]) == 0
    merged = json.loads((tmp_path / "runs" / "tiny" / "eval" / "k_val_results.json").read_text())
    assert merged and [r["score"] for r in merged] != [r["score"] for r in results]
    assert max(Counter(r["image_id"] for r in merged).values()) <= 20
    # a checkpoint of another model shape: clear error, exit 2
    rc = eval_cli.main(["--config", str(cfg_path), "--checkpoint", str(ckpt), "--set", "model.head.num_convs=2"])
    assert rc == 2 and "does not fit" in capsys.readouterr().err
    # a checkpoint trained on another category table: refused, naming both (it evaluated against wrong ids)
    torch.save({"model": models.build_detector(cfg.model, 3).state_dict(),
                "categories": [{"id": 3, "name": "square"}, {"id": 9, "name": "none"}, {"id": 7, "name": "small"}]},
               tmp_path / "other.pth")
    rc = eval_cli.main(["--config", str(cfg_path), "--checkpoint", str(tmp_path / "other.pth")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: category tables differ: checkpoint {tmp_path / 'other.pth'} has "
                                      "[3 'square', 7 'small', 9 'none'] but ")
    assert "instances_val2017.json has [3 'square', 7 'small square', 9 'none']" in err
    # a truncated image, read in a loader worker: one line naming the file, exit 2
    image = root / "val2017" / "im2.jpg"
    image.write_bytes(image.read_bytes()[:200])
    rc = eval_cli.main(["--config", str(cfg_path), "--checkpoint", str(ckpt), "--set", "data.num_workers=1"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: {image}: truncated JPEG (no ")
