"""eval.py without ground truth: --images (predictions + drawings), --split test-dev2017 --submission; coco-mini."""
import json
import zipfile

import cv2
import pytest
import torch

import eval as eval_cli
from tests.conftest import SHARED

MINI = SHARED / "data" / "coco-mini"
pytestmark = [pytest.mark.slow,  # runs a detector over coco-mini images several times
              pytest.mark.skipif(not MINI.is_dir(), reason="needs ../shared/data/coco-mini")]


def _config(tmp_path, root, batch_size=1):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        f"device: cpu\noutput_dir: {tmp_path / 'runs'}\n"
        f"data: {{root: {root}, num_workers: 0, pin_memory: false, eval_short_side: 128, eval_max_size: 213}}\n"
        "model:\n  backbone: {name: resnet18, norm: frozen_bn, frozen_stages: 0}\n  fpn: {channels: 32}\n"
        "  head: {channels: 32, num_convs: 1}\n  postprocess: {score_threshold: 0.0, max_detections: 20}\n"
        f"eval: {{batch_size: {batch_size}}}\n")
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A random-weight tiny detector checkpoint for coco-mini and its model-mode val detections.

    One image per batch: with random weights, anchors in a batch's padding give clipped boxes with high scores,
    so detections depend on which images share a batch; one per batch compares the pipelines themselves.
    """
    import models
    from training.config import load_config

    tmp = tmp_path_factory.mktemp("predict")
    gt = json.loads((MINI / "annotations" / "instances_val2017.json").read_text())
    keep = {im["id"] for im in gt["images"][:6]}  # a few images keep the test fast on CPU
    gt = {**gt, "images": [im for im in gt["images"] if im["id"] in keep],
          "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}
    root = tmp / "mini"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(gt))
    (root / "val2017").symlink_to(MINI / "val2017")  # read in place
    cfg_path = _config(tmp, root)
    cfg = load_config(cfg_path)
    torch.manual_seed(0)
    model = models.build_detector(cfg.model, len(gt["categories"]))
    ckpt = tmp / "k.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    assert eval_cli.main(["--config", str(cfg_path), "--checkpoint", str(ckpt)]) == 0
    results = json.loads((tmp / "runs" / "tiny" / "eval" / "k_val_results.json").read_text())
    return tmp, cfg_path, ckpt, gt, results


def _by_image(results, key):
    out = {}
    for r in results:
        out.setdefault(r[key], []).append(r)
    return {k: sorted(v, key=lambda d: (-d["score"], d["category_id"])) for k, v in out.items()}


def _assert_same(mine, ref):
    """Same detections up to float noise, in any order (random weights give many near-equal scores)."""
    assert len(mine) == len(ref)
    left = list(ref)
    for a in mine:
        match = [b for b in left if b["category_id"] == a["category_id"] and abs(b["score"] - a["score"]) < 1e-5
                 and all(abs(u - v) < 1e-3 for u, v in zip(a["bbox"], b["bbox"]))]
        assert match, f"no reference detection for {a}"
        left.remove(match[0])


def test_images_equal_model_mode_detections_and_are_drawn(trained, tmp_path, capsys):
    tmp, cfg_path, ckpt, gt, ref = trained
    chosen = gt["images"][:5]  # landscape and portrait sizes
    files = [str(MINI / "val2017" / im["file_name"]) for im in chosen]
    out = tmp_path / "pred"
    assert eval_cli.main(["--config", str(cfg_path), "--checkpoint", str(ckpt), "--images", *files,
                          "--out", str(out), "--score-threshold", "0.0"]) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    mine = _by_image(results, "file_name")
    expected = _by_image(ref, "image_id")
    for im in chosen:
        rows = mine[str(MINI / "val2017" / im["file_name"])]
        assert {(r["width"], r["height"]) for r in rows} == {(im["width"], im["height"])}
        _assert_same(rows, expected[im["id"]])
    for im in chosen:
        drawn = cv2.imread(str(out / im["file_name"]))
        original = cv2.imread(str(MINI / "val2017" / im["file_name"]))
        assert drawn.shape == original.shape and (drawn != original).any()  # something drawn, same size
    assert "boxes with score >= 0" in capsys.readouterr().out


def test_bad_inputs_are_skipped_one_line_each_with_a_summary(trained, tmp_path, capsys):
    tmp, cfg_path, ckpt, gt, _ = trained
    folder = tmp_path / "imgs"
    folder.mkdir()
    good = MINI / "val2017" / gt["images"][0]["file_name"]
    (folder / "a.jpg").write_bytes(good.read_bytes())
    (folder / "truncated.jpg").write_bytes(good.read_bytes()[:3000])
    (folder / "notes.png").write_text("not an image")
    (tmp_path / "empty").mkdir()
    rc = eval_cli.main(["--config", str(cfg_path), "--checkpoint", str(ckpt), "--images", str(folder),
                        str(tmp_path / "empty"), str(tmp_path / "missing.jpg"), str(tmp_path / "*.nothing"),
                        "--out", str(tmp_path / "out"),
                        "--set", "eval.batch_size=2", "data.num_workers=1"])  # batches of 2, decoded in a worker
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    err = captured.err
    assert "Traceback" not in err
    for needle in ("notes.png: not an image", "empty: folder has no image files", "missing.jpg: file not found",
                   "*.nothing: no image file matches", "truncated.jpg: truncated JPEG"):
        assert needle in err, needle
    assert "5 input(s) skipped" in err.strip().splitlines()[-1]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["file_name"] for r in results} == {str(folder / "a.jpg")}
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == ["a.jpg"]
    # no image at all: one error line, exit 2
    assert eval_cli.main(["--config", str(cfg_path), "--checkpoint", str(ckpt), "--images",
                          str(tmp_path / "empty")]) == 2
    assert "no readable image" in capsys.readouterr().err


def test_test_dev_submission_on_ground_truth_free_coco_mini(trained, tmp_path, capsys):
    tmp, _, ckpt, gt, ref = trained
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "test2017").symlink_to(MINI / "val2017")  # read in place
    info = {"images": gt["images"], "categories": gt["categories"], "info": {"description": "test-dev from mini"}}
    (root / "annotations" / "image_info_test-dev2017.json").write_text(json.dumps(info))
    cfg_path = _config(tmp_path, root)
    state = torch.load(ckpt, weights_only=True)
    state["categories"] = gt["categories"]  # what a trainer checkpoint carries (no instances file under root)
    torch.save(state, tmp_path / "k.pth")
    out = tmp_path / "sub" / "test.zip"
    rc = eval_cli.main(["--config", str(cfg_path), "--checkpoint", str(tmp_path / "k.pth"), "--split",
                        "test-dev2017", "--submission", str(out), "--method-name", "alrp_tiny"])
    assert rc == 0, capsys.readouterr().err
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["detections_test-dev2017_alrp-tiny_results.json"]
        sub = json.loads(zf.read(zf.namelist()[0]))
    assert set(sub[0]) == {"image_id", "category_id", "bbox", "score"}
    mine, expected = _by_image(sub, "image_id"), _by_image(ref, "image_id")
    assert set(mine) == set(expected)
    for image_id in expected:
        _assert_same(mine[image_id], expected[image_id])
    # more than 100 detections per image: rejected before writing
    out.unlink()
    rc = eval_cli.main(["--config", str(cfg_path), "--checkpoint", str(tmp_path / "k.pth"), "--split",
                        "test-dev2017", "--submission", str(out), "--set", "model.postprocess.max_detections=150"])
    err = capsys.readouterr().err
    assert rc == 2 and "more than 100 detections" in err and not out.exists()


def test_argument_conflicts():
    for argv in (["--gt", "a", "--detections", "b", "--images", "x.jpg"],
                 ["--config", "c", "--checkpoint", "k", "--images", "x.jpg", "--split", "val"],
                 ["--config", "c", "--checkpoint", "k", "--score-threshold", "0.3"],
                 ["--config", "c", "--checkpoint", "k", "--split", "test-dev2017", "--plots", "p"],
                 ["--config", "c", "--checkpoint", "k", "--image-dir", "imgs"]):
        with pytest.raises(SystemExit) as info:
            eval_cli.parse_args(argv)
        assert info.value.code == 2
