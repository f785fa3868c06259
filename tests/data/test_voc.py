"""VOC converter policy (bad boxes and images reported and dropped, or fatal with strict), strict JSON output, split
lists and one category table across splits (scripts/voc_to_coco.py, scripts/prepare_voc.py)."""
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.tools.check import check_dataset
from data.errors import DatasetError
from data.tools.voc import parse_voc_xml, read_split_list, save_coco_json, voc_to_coco
from tests.fixtures.script_loader import load_script


def _xml(filename="a.jpg", size=(64, 48), objects=(("cat", (5, 6, 20, 30)),)):
    objs = "".join(f"<object><name>{name}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
                   f"<ymax>{b[3]}</ymax></bndbox></object>" for name, b in objects)
    return (f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
            f"</size>{objs}</annotation>")


def _convert(*xmls, **kwargs):
    anns = [parse_voc_xml(x, f"f{i}.xml") for i, x in enumerate(xmls)]
    return voc_to_coco(anns, **kwargs)


@pytest.mark.parametrize("box, reason", [
    ((30, 6, 20, 30), "inverted box"),                 # used to abort the whole conversion
    ((5, 6, 4, 30), "zero-width or zero-height box"),  # xmax = xmin - 1 in inclusive indices: width 0
    (("nan", 6, 20, 30), "non-finite coordinate"),     # used to be written as a NaN literal
    ((5, 6, "inf", 30), "non-finite coordinate"),
    ((7, 6, 7, 30), "box under 2 px wide or tall"),    # a 1-pixel box, as in BCCD
    ((70, 60, 80, 70), "box outside the image"),
])
def test_bad_box_is_reported_with_file_and_index_and_dropped(box, reason):
    coco, report = _convert(_xml(objects=(("cat", (1, 1, 10, 10)), ("dog", box))))
    assert [a["bbox"] for a in coco["annotations"]] == [[0.0, 0.0, 10.0, 10.0]]
    assert len(report.problems) == 1 and report.problems[0].startswith(f"f0.xml <object> #1: {reason}")
    assert report.counts == {report.problems[0].split(": ", 1)[1].split(" dog")[0]: 1}
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]  # the class stays in the table
    with pytest.raises(DatasetError, match=r"strict.*f0.xml <object> #1"):
        _convert(_xml(objects=(("cat", (1, 1, 10, 10)), ("dog", box))), strict=True)


def test_image_without_size_and_duplicate_file_names_are_dropped():
    coco, report = _convert(_xml("a.jpg"), _xml("b.jpg", size=(0, 0)), _xml("a.jpg"))
    assert [i["file_name"] for i in coco["images"]] == ["a.jpg"] and len(coco["annotations"]) == 1
    assert report.counts == {"image without a size": 1, "duplicate image file name": 1}
    assert report.problems[0].startswith("f1.xml: image without a size (0x0)")
    assert report.problems[1].startswith("f2.xml: duplicate image file name 'a.jpg' (also in f0.xml)")
    assert "1 duplicate image file name, 1 image without a size" in report.summary()
    with pytest.raises(DatasetError, match="2 bad boxes or images"):
        _convert(_xml("a.jpg"), _xml("b.jpg", size=(0, 0)), _xml("a.jpg"), strict=True)


def test_box_past_the_border_is_clipped_and_counted():
    coco, report = _convert(_xml(size=(64, 48), objects=(("cat", (50, 40, 80, 60)),)))
    assert coco["annotations"][0]["bbox"] == [49.0, 39.0, 15.0, 9.0] and report.clipped_boxes == 1
    assert report.problems == [] and "1 boxes clipped" in report.summary()


def test_save_coco_json_never_writes_nan(tmp_path):
    with pytest.raises(DatasetError, match="non-finite"):
        save_coco_json({"annotations": [{"bbox": [math.nan, 0, 1, 1]}]}, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(DatasetError, match="cannot write"):
        save_coco_json({}, tmp_path)  # a folder


def test_split_list_reads_first_tokens(tmp_path):
    (tmp_path / "l.txt").write_text("a\n\nb  1\n")
    assert read_split_list(tmp_path / "l.txt") == ["a", "b"]
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(DatasetError, match="split list is empty"):
        read_split_list(tmp_path / "e.txt")


def _voc_tree(root: Path) -> Path:
    """A tiny VOC tree: train has classes a and b, val only b (a per-split table would differ)."""
    files = {"i1": (("a", (2, 2, 20, 20)), ("b", (30, 5, 50, 40))), "i2": (("a", (1, 1, 9, 9)),),
             "i3": (("b", (10, 10, 30, 30)), ("b", (40, 30, 40, 30))), "i4": (("b", (5, 5, 25, 25)),)}
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    for stem, objects in files.items():
        (root / "Annotations" / f"{stem}.xml").write_text(_xml(f"{stem}.jpg", (64, 48), objects))
        cv2.imwrite(str(root / "JPEGImages" / f"{stem}.jpg"), np.full((48, 64, 3), 90, np.uint8))
    (root / "ImageSets/Main/train.txt").write_text("i1\ni2\n")
    (root / "ImageSets/Main/val.txt").write_text("i3\ni4\n")
    return root


def test_voc_to_coco_script_keeps_one_category_table_across_split_lists(tmp_path, capsys):
    voc = _voc_tree(tmp_path / "voc")
    main = load_script("scripts/voc_to_coco.py").main
    tables = []
    for split in ("train", "val"):
        out = tmp_path / f"{split}.json"
        assert main(["--xml-dir", str(voc / "Annotations"), "--list", str(voc / f"ImageSets/Main/{split}.txt"),
                     "--out", str(out)]) == 0
        coco = json.loads(out.read_text())
        tables.append(coco["categories"])
        assert len(coco["images"]) == 2
    assert tables[0] == tables[1] == [{"id": 1, "name": "a", "supercategory": "a"},
                                      {"id": 2, "name": "b", "supercategory": "b"}]
    assert "i3.xml <object> #1: box under 2 px" in capsys.readouterr().out


def test_voc_to_coco_script_strict_and_folder_out(tmp_path, capsys):
    voc = _voc_tree(tmp_path / "voc")
    main = load_script("scripts/voc_to_coco.py").main
    assert main(["--xml-dir", str(voc / "Annotations"), "--out", str(tmp_path / "o.json"), "--strict"]) == 1
    assert "i3.xml <object> #1" in capsys.readouterr().err and not (tmp_path / "o.json").exists()
    with pytest.raises(SystemExit):
        main(["--xml-dir", str(voc / "Annotations"), "--out", str(tmp_path)])
    assert "is a folder" in capsys.readouterr().err


def test_prepare_voc_builds_checked_coco_layout(tmp_path, capsys):
    voc = _voc_tree(tmp_path / "voc")
    out = tmp_path / "coco"
    main = load_script("scripts/prepare_voc.py").main
    assert main(["--voc", str(voc), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "val: dropped: 1 box under 2 px wide or tall" in printed and "train: dropped: no bad boxes" in printed
    train, val = (json.loads((out / "annotations" / f"instances_{s}.json").read_text()) for s in ("train", "val"))
    assert train["categories"] == val["categories"] and [c["name"] for c in val["categories"]] == ["a", "b"]
    assert [i["file_name"] for i in val["images"]] == ["i3.jpg", "i4.jpg"] and len(val["annotations"]) == 2
    for split in ("train", "val"):
        report = check_dataset(out, split)
        assert not report.fatal and report.degenerate_boxes == 0
    assert main(["--voc", str(voc), "--out", str(out)]) == 0 and "already prepared" in capsys.readouterr().out
    assert main(["--voc", str(voc), "--out", str(out), "--force", "--strict"]) == 1
    assert "i3.xml <object> #1" in capsys.readouterr().err


def test_prepare_voc_reports_missing_files_and_leaks(tmp_path, capsys):
    voc = _voc_tree(tmp_path / "voc")
    main = load_script("scripts/prepare_voc.py").main
    (voc / "ImageSets/Main/val.txt").write_text("i3\ni4\ni1\n")
    assert main(["--voc", str(voc), "--out", str(tmp_path / "c1"), "--symlink"]) == 0
    assert "listed in two splits: i1: train, val" in capsys.readouterr().out
    assert (tmp_path / "c1" / "val" / "i1.jpg").is_symlink()
    (voc / "ImageSets/Main/val.txt").write_text("i3\nmissing\n")
    assert main(["--voc", str(voc), "--out", str(tmp_path / "c2")]) == 1
    assert "missing.xml: listed in val.txt but cannot be read" in capsys.readouterr().err
    (voc / "ImageSets/Main/val.txt").write_text("i3\n")
    (voc / "JPEGImages" / "i3.jpg").unlink()
    assert main(["--voc", str(voc), "--out", str(tmp_path / "c3")]) == 1
    assert "i3.jpg: image of an annotation file not found" in capsys.readouterr().err
