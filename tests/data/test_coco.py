"""CocoDetection on real coco-mini and on small broken datasets written in tmp_path."""
import json
import os

import cv2
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from data import BadImageError, DataConfig, DatasetError, build_dataset, build_loader
from data.coco import CocoDetection
from tests.fixtures.bad_inputs import noisy_jpeg, zero_middle_quarter
from tests.fixtures.synthetic import synthetic_coco_dict, write_coco


def _dataset(root, split="train", train=True, **kw):
    return CocoDetection(ann_file=root / "annotations" / f"instances_{split}.json", img_dir=root / split,
                         transforms=None, train=train, **kw)


@pytest.fixture
def tiny(tmp_path):
    coco, images = synthetic_coco_dict(4, size=(40, 60), boxes_per_image=2, cat_ids=(5, 2, 9))
    write_coco(tmp_path, "train", coco, images)
    return tmp_path, coco


def _rewrite(root, coco):
    (root / "annotations" / "instances_train.json").write_text(json.dumps(coco))


# ---------- real COCO subset ----------

def test_coco_mini_category_mapping_and_boxes(coco_mini_root):
    cfg = DataConfig(root=str(coco_mini_root), num_workers=0)
    ds = build_dataset(cfg, "val2017", train=False)
    ref = COCO(str(coco_mini_root / "annotations" / "instances_val2017.json"))
    cat_ids = sorted(ref.getCatIds())
    assert ds.num_classes == len(cat_ids) == 80
    assert [ds.label_to_cat_id(k) for k in range(ds.num_classes)] == cat_ids
    assert all(ds.cat_id_to_label[c] == k for k, c in enumerate(cat_ids))
    assert ds.label_to_cat_id(79) == 90 and ds.class_names[0] == ref.loadCats(cat_ids[0])[0]["name"]
    assert len(ds) == len(ref.getImgIds())  # evaluation keeps every image
    # Independent reference: pycocotools annotations of an image with crowd boxes.
    crowd_img = next(a["image_id"] for a in ref.dataset["annotations"] if a["iscrowd"])
    index = next(i for i, r in enumerate(ds.records) if r.image_id == crowd_img)
    anns = ref.loadAnns(ref.getAnnIds(imgIds=crowd_img))
    normal = [a for a in anns if not a["iscrowd"]]
    crowd = [a for a in anns if a["iscrowd"]]
    ds.transforms = None
    image, t = ds[index]
    info = ref.loadImgs(crowd_img)[0]
    assert image.shape == (3, info["height"], info["width"]) and t["image_id"] == crowd_img
    assert t["orig_size"] == (info["height"], info["width"])
    xyxy = lambda a: [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]  # noqa: E731
    got = sorted(zip(t["boxes"].tolist(), t["labels"].tolist()))
    want = sorted((xyxy(a), cat_ids.index(a["category_id"])) for a in normal)
    assert len(got) == len(want)
    for (gb, gl), (wb, wl) in zip(got, want):
        assert gl == wl and np.allclose(gb, np.clip(wb, 0, [info["width"], info["height"]] * 2), atol=1e-3)
    assert len(t["crowd_boxes"]) == len(crowd) >= 1
    assert t["labels"].dtype == torch.int64 and t["boxes"].dtype == torch.float32


def test_coco_mini_train_loader_batch(coco_mini_root):
    cfg = DataConfig(root=str(coco_mini_root), num_workers=0, train_size=128)
    ds = build_dataset(cfg, "train2017", train=True)
    images, targets = next(iter(build_loader(ds, cfg, train=True, batch_size=3)))
    assert images.shape == (3, 3, 128, 128) and len(targets) == 3
    for t in targets:
        assert len(t["boxes"]) >= 1 and t["labels"].max() < ds.num_classes
        assert t["boxes"].min() >= 0 and t["boxes"].max() <= 128 + 1e-3


# ---------- synthetic data: counters ----------

def test_degenerate_boxes_dropped_and_counted_crowd_kept_apart(tiny):
    root, coco = tiny
    h, w = 40, 60
    coco["annotations"] += [
        {"id": 100, "image_id": 1, "category_id": 5, "bbox": [10, 10, 0.5, 20], "iscrowd": 0},  # too thin
        {"id": 101, "image_id": 1, "category_id": 5, "bbox": [w - 0.5, 5, 10, 10], "iscrowd": 0},  # outside after clip
        {"id": 102, "image_id": 1, "category_id": 2, "bbox": [1, 2, 10, 12], "iscrowd": 1},
        {"id": 103, "image_id": 1, "category_id": 2, "bbox": [-5, -5, 20, 20], "iscrowd": 0},  # clipped, kept
    ]
    _rewrite(root, coco)
    ds = _dataset(root)
    assert ds.num_degenerate == 2 and sorted(ds.degenerate_ann_ids) == [100, 101]
    _, t = ds[0]
    assert t["crowd_boxes"].tolist() == [[1, 2, 11, 14]]
    assert [0, 0, 15, 15] in t["boxes"].tolist()
    assert ds.summary()["degenerate_boxes"] == 2
    assert ds.num_classes == 3 and ds.label_to_cat_id(0) == 2 and ds.cat_id_to_label[9] == 2


def test_training_skips_images_without_boxes_eval_keeps_them(tiny):
    root, coco = tiny
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != 2]
    coco["annotations"].append({"id": 999, "image_id": 3, "category_id": 5, "bbox": [0, 0, 5, 5], "iscrowd": 1})
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != 3 or a["id"] == 999]
    _rewrite(root, coco)
    train, evl = _dataset(root), _dataset(root, train=False)
    assert len(train) == 2 and train.num_skipped_empty == 2 and len(evl) == 4
    assert {r.image_id for r in train.records} == {1, 4}


# ---------- broken annotation files ----------

def test_missing_annotation_file(tmp_path):
    with pytest.raises(DatasetError, match=r"instances_val\.json: annotation file not found"):
        build_dataset(DataConfig(root=str(tmp_path)), "val", train=False)


def test_malformed_json(tiny):
    root, _ = tiny
    (root / "annotations" / "instances_train.json").write_text('{"images": [}')
    with pytest.raises(DatasetError, match=r"instances_train\.json: malformed JSON at line 1"):
        _dataset(root)


@pytest.mark.parametrize("field,value,message", [
    ("image_id", 77, "annotation id 1 refers to unknown image_id 77"),
    ("category_id", 4, "annotation id 1 refers to unknown category_id 4"),
    ("category_id", "5", "annotation id 1 refers to unknown category_id '5' \\(a string; the category ids are "
                         "numbers, e.g. 5\\)"),
    ("image_id", "1", "annotation id 1 refers to unknown image_id '1' \\(a string; the image ids are numbers, "
                      "e.g. 1\\)"),
    ("bbox", [1, 2, 3], "annotation id 1 has a malformed bbox"),
])
def test_annotation_with_unknown_ids(tiny, field, value, message):
    root, coco = tiny
    coco["annotations"][0][field] = value
    _rewrite(root, coco)
    with pytest.raises(DatasetError, match="instances_train.json: " + message):
        _dataset(root)


def test_training_split_without_a_usable_box_is_a_data_error_naming_the_file(tiny):
    root, coco = tiny
    coco["annotations"] = [dict(a, bbox=[1, 1, 0.5, 5]) for a in coco["annotations"]]  # all degenerate
    _rewrite(root, coco)
    with pytest.raises(DatasetError, match=r"instances_train\.json: no image with a usable box to train on "
                                           r"\(4 images, 8 degenerate boxes dropped, 0 crowd boxes\)"):
        _dataset(root)
    assert len(_dataset(root, train=False)) == 4  # evaluating such a split is fine


def test_missing_keys_and_duplicates(tiny):
    root, coco = tiny
    del coco["categories"]
    _rewrite(root, coco)
    with pytest.raises(DatasetError, match="missing or non-list key 'categories'"):
        _dataset(root)
    root2, coco2 = root, synthetic_coco_dict(2)[0]
    coco2["images"][1]["id"] = coco2["images"][0]["id"]
    _rewrite(root2, coco2)
    with pytest.raises(DatasetError, match="duplicate image id 1"):
        _dataset(root2)


# ---------- broken images ----------

def _write_jpeg(path, h=40, w=60):
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    path.write_bytes(buf.tobytes())
    return buf.tobytes()


@pytest.mark.parametrize("damage,reason", [
    ("missing", "image file not found"),
    ("corrupt", "cannot decode image"),
    ("truncated", "truncated JPEG"),
    ("empty", "empty file"),
    ("wrong_size", "annotation file says 40x60"),
])
def test_bad_images_raise_naming_the_file(tiny, damage, reason):
    root, coco = tiny
    coco["images"][0]["file_name"] = "000001.jpg"
    _rewrite(root, coco)
    path = root / "train" / "000001.jpg"
    data = _write_jpeg(path, *((30, 60) if damage == "wrong_size" else (40, 60)))
    if damage == "missing":
        path.unlink()
    elif damage == "corrupt":
        path.write_bytes(bytes(range(256)) * 4)  # not an image at all
    elif damage == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])  # cv2 alone would decode this grey-filled
    elif damage == "empty":
        path.write_bytes(b"")
    ds = _dataset(root)
    with pytest.raises(BadImageError, match=reason) as info:
        ds[0]
    assert "000001.jpg" in str(info.value)
    assert ds[1][0].shape == (3, 40, 60)  # other images are fine


def test_jpeg_corrupted_in_the_middle_is_a_bad_image(tmp_path, capfd):
    """libjpeg decodes it (half the pixels garbage) and only prints a warning: that warning makes it a bad image."""
    from data.image_io import decode_image, read_image

    good, bad = noisy_jpeg(), zero_middle_quarter(noisy_jpeg())
    assert cv2.imdecode(np.frombuffer(bad, np.uint8), cv2.IMREAD_COLOR) is not None  # OpenCV alone accepts it
    capfd.readouterr()
    path = tmp_path / "bad.jpg"
    path.write_bytes(bad)
    with pytest.raises(BadImageError, match=r"bad\.jpg: corrupt image data \(decoder: Corrupt JPEG data: \d+ "
                                            r"extraneous bytes before marker 0xd9\)"):
        read_image(path)
    assert decode_image(good).shape == (120, 160, 3)
    os.write(2, b"still on stderr\n")  # the real stderr is restored after decoding
    err = capfd.readouterr().err
    assert err == "still on stderr\n"  # the decoder's warning became the error, not noise on the console


def test_decoder_output_that_is_not_a_corruption_warning_is_passed_on(capfd, monkeypatch):
    from data import image_io

    def chatty_decode(buf, flags):
        os.write(2, b"[ WARN] something else\n")
        return np.zeros((2, 3, 3), np.uint8)

    monkeypatch.setattr(image_io.cv2, "imdecode", chatty_decode)
    assert image_io.decode_image(noisy_jpeg()).shape == (2, 3, 3)
    assert "[ WARN] something else" in capfd.readouterr().err


def test_truncation_detected_from_bytes_whatever_the_decoder_does(tiny):
    # OpenCV 4.x decodes a truncated JPEG grey-filled (5.0 returns None); the byte check does not depend on it.
    from data.image_io import check_complete
    root, _ = tiny
    data = _write_jpeg(root / "x.jpg")
    assert check_complete(data) is None
    for cut in (len(data) // 2, len(data) - 2, 300):
        assert "truncated JPEG" in check_complete(data[:cut])
    assert check_complete(data + b"\x00" * 7) is None  # trailing padding after the end marker is fine
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert check_complete(png.tobytes()) is None and "truncated PNG" in check_complete(png.tobytes()[:-20])


def test_skip_mode_counts_and_reports_across_workers(tiny):
    root, coco = tiny
    (root / "train" / coco["images"][1]["file_name"]).write_bytes(b"not an image")
    (root / "train" / coco["images"][3]["file_name"]).unlink()
    cfg = DataConfig(root=str(root), on_bad_image="skip", num_workers=1, train_split="train", train_size=32)
    ds = build_dataset(cfg, "train", train=True)
    loader = build_loader(ds, cfg, train=True, batch_size=2)
    ids = [t["image_id"] for _, targets in loader for t in targets]
    assert len(ids) == 4 and 2 not in ids and 4 not in ids  # replaced by readable images
    report = ds.bad_image_report()
    assert report["skipped"] == 2 and sorted(p.rsplit("/", 1)[1] for p in report["files"]) == ["000002.png", "000004.png"]
    assert ds.bad_image_report(reset=True)["skipped"] == 2 and ds.bad_image_report()["skipped"] == 0
    error_ds = build_dataset(DataConfig(root=str(root), train_size=32), "train", train=True)
    with pytest.raises(BadImageError, match="000002.png"):
        error_ds[1]


def test_missing_image_folder(tiny):
    root, _ = tiny
    (root / "train").rename(root / "elsewhere")
    with pytest.raises(DatasetError, match="image folder not found"):
        _dataset(root)


def test_non_numeric_image_size_names_the_image(tiny):
    root, coco = tiny
    coco["images"][2]["width"] = "wide"
    _rewrite(root, coco)
    with pytest.raises(DatasetError, match="instances_train.json: image id 3 has a non-positive or non-numeric size"):
        _dataset(root)


def test_error_from_a_loader_worker_reduces_to_one_line(tiny):
    from data.errors import error_message

    root, coco = tiny
    path = root / "train" / coco["images"][0]["file_name"]
    path.write_bytes(path.read_bytes()[:-30])  # truncated PNG
    cfg = DataConfig(root=str(root), num_workers=1, train_size=32)
    loader = build_loader(build_dataset(cfg, "train", train=False), cfg, train=False, batch_size=2)
    with pytest.raises(BadImageError) as info:
        next(iter(loader))
    assert "Traceback" in str(info.value)  # what torch re-raises from the worker
    assert error_message(info.value) == f"{path}: truncated PNG (no IEND chunk)"
    assert error_message(BadImageError(str(path), "empty file")) == f"{path}: empty file"
