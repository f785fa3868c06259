"""Units behind eval.py --images / --submission: input expansion, image-list dataset, label placement,
thresholds from the checkpoint, submission checks and zip."""
import json
import math
import zipfile

import cv2
import numpy as np
import pytest

from training import predictions as pr
from training.drawing import draw_detections, place_label
from training.submission import SubmissionError, check_results, result_file_name, write_submission
from data.errors import DatasetError
from data.image_list import ImageListDataset, entries_from_files, expand_inputs, load_image_info
from data.presets import build_eval_transforms
from data import DataConfig


def _jpg(path, h=40, w=60):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


def test_expand_inputs_files_folders_globs_and_what_named_nothing(tmp_path):
    a, b = _jpg(tmp_path / "f" / "b.jpg"), _jpg(tmp_path / "f" / "a.png")
    (tmp_path / "f" / "readme.txt").write_text("x")
    c = _jpg(tmp_path / "g" / "sub" / "c.jpeg")
    (tmp_path / "empty").mkdir()
    files, skipped = expand_inputs([tmp_path / "f", str(a), str(tmp_path / "g" / "**" / "*.jpeg"),
                                    tmp_path / "empty", tmp_path / "nope.jpg", str(tmp_path / "*.gif")])
    assert files == [b, a, c]  # folder sorted, repeats dropped, order kept
    assert [s.reason.split(" ")[0] for s in skipped] == ["folder", "file", "no"]


def test_unreadable_files_are_skipped_by_the_probe_and_while_decoding(tmp_path):
    good = _jpg(tmp_path / "good.jpg", 30, 50)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(good.read_bytes()[:-400])  # header intact (probe passes), end missing (decode fails)
    entries, skipped = entries_from_files([good, tmp_path / "empty.jpg", tmp_path / "text.jpg", trunc])
    assert [e.path.name for e in entries] == ["good.jpg", "trunc.jpg"] and [e.image_id for e in entries] == [1, 2]
    assert (entries[0].height, entries[0].width) == (30, 50)
    assert [s.reason for s in skipped] == ["empty file", "not an image (unknown format)"]
    ds = ImageListDataset(entries, build_eval_transforms(DataConfig(eval_short_side=60, eval_max_size=100)))
    image, target = ds[0]
    assert image.shape == (3, 60, 100) and target["orig_size"] == (30, 50) and target["scale"] == pytest.approx(2.0)
    assert target["boxes"].shape == (0, 4) and ds.image_aspect_ratio(0) == pytest.approx(50 / 30)
    placeholder, t2 = ds[1]
    assert placeholder.shape == (3, 32, 32) and t2["image_id"] == 2
    assert ds.skipped_ids() == {2} and "truncated JPEG" in str(ds.skipped()[0])
    with pytest.raises(DatasetError, match="no readable image"):
        ImageListDataset([], None)


def test_image_info_file_without_annotations(tmp_path):
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"images": [{"id": 7, "file_name": "x.jpg", "width": 5, "height": 4}],
                                "categories": [{"id": 3, "name": "b"}, {"id": 1, "name": "a"}]}))
    entries, cats = load_image_info(info, tmp_path / "imgs")
    assert entries[0].image_id == 7 and entries[0].path == tmp_path / "imgs" / "x.jpg"
    assert [c["id"] for c in cats] == [1, 3]
    info.write_text(json.dumps({"images": [{"id": 7, "file_name": "x.jpg"}], "categories": []}))
    with pytest.raises(DatasetError, match="info.json: image id 7 has no 'width'"):
        load_image_info(info, tmp_path)


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_never_overlap_and_stay_inside_the_image():
    taken = []
    for k in range(12):  # twelve nearly identical boxes: labels must stack, not pile up
        rect = place_label((50 + k, 60, 150, 200), (40, 12), (240, 320), taken)
        if rect is not None:
            assert all(not _overlap(rect, t) for t in taken)
            assert rect[0] >= 0 and rect[1] >= 0 and rect[2] <= 320 and rect[3] <= 240
            taken.append(rect)
    assert len(taken) >= 8
    assert place_label((0, 0, 10, 10), (40, 12), (240, 320), []) == (0, 0, 40, 12)  # no room above: inside
    assert place_label((300, 0, 310, 10), (40, 12), (240, 320), [(280, 0, 320, 12)]) == (280, 12, 320, 24)


def test_draw_detections_draws_boxes_and_labels_on_a_copy():
    image = np.zeros((120, 160, 3), np.uint8)
    dets = [{"bbox": [20, 30, 60, 50], "category_id": 1, "score": 0.9},
            {"bbox": [22, 31, 60, 50], "category_id": 2, "score": 0.8}]
    out = draw_detections(image, dets, {1: "cat"})
    assert not image.any() and out.shape == image.shape
    assert out[30, 40:70].any() and out[10:30, 20:60].any()  # box edge, label above it


def test_thresholds_and_class_table_from_the_checkpoint(tmp_path):
    state = {"lrp_thresholds": {3: 0.42, 5: float("nan")},
             "categories": [{"id": 5, "name": "b"}, {"id": 3, "name": "a"}]}
    per_class, default, how = pr.score_thresholds(state, None)
    assert per_class == {3: 0.42} and default == 0.5 and "LRP-optimal" in how
    assert pr.score_thresholds(state, 0.3)[:2] == ({}, 0.3)
    assert pr.score_thresholds({}, None)[:2] == ({}, 0.5)
    table = pr.class_table(state, tmp_path / "missing.json")
    assert table.cat_ids == [3, 5] and table.name_of() == {3: "a", 5: "b"}
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"categories": [{"id": 9, "name": "z"}]}))
    assert pr.class_table({}, ann).cat_ids == [9]
    with pytest.raises(ValueError, match="missing.json is missing"):
        pr.class_table({}, tmp_path / "missing.json")


def test_checkpoint_extras_keep_finite_thresholds_and_fall_back_to_the_resumed_ones():
    class DS:
        cat_ids, class_names = [1, 4], ["a", "d"]

    metrics = {"per_class": {1: {"threshold": 0.3}, 4: {"threshold": math.nan}, 7: None}}
    assert pr.checkpoint_extras(DS(), metrics) == {
        "categories": [{"id": 1, "name": "a"}, {"id": 4, "name": "d"}], "lrp_thresholds": {1: 0.3}}
    assert pr.checkpoint_extras(object(), None, {2: 0.7}) == {"lrp_thresholds": {2: 0.7}}


def _det(image_id=1, cat=1, bbox=(0, 0, 5, 5), score=0.5):
    return {"image_id": image_id, "category_id": cat, "bbox": list(bbox), "score": score}


def test_submission_checks_each_rule():
    check_results([_det()], [1, 2], [1])
    cases = {"image ids not in the split: 9": [_det(image_id=9)],
             "category ids not in the split's category table: 4": [_det(cat=4)],
             "more than 100 detections on images 1": [_det()] * 101,
             "non-finite or negative-size bbox in detections #0": [_det(bbox=(0, 0, float("inf"), 1))],
             "non-finite score": [_det(score=float("nan"))]}
    for message, results in cases.items():
        with pytest.raises(SubmissionError, match=message.replace("(", r"\(")):
            check_results(results, [1, 2], [1])
    with pytest.raises(SubmissionError, match="negative-size"):
        check_results([_det(bbox=(0, 0, -1, 3))], [1], [1])


def test_submission_zip_holds_one_server_named_file(tmp_path):
    assert result_file_name("test-dev2017", "aLRP r50_500") == "detections_test-dev2017_aLRP-r50-500_results.json"
    out = write_submission(tmp_path / "s.zip", [{**_det(), "file_name": "x"}], "test-dev2017", "m", [1], [1])
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["detections_test-dev2017_m_results.json"]
        assert json.loads(zf.read(zf.namelist()[0])) == [_det()]
    with pytest.raises(SubmissionError):
        write_submission(tmp_path / "t.zip", [_det(image_id=5)], "test-dev2017", "m", [1], [1])
    assert not (tmp_path / "t.zip").exists()
