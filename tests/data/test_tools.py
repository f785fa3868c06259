"""VOC -> COCO conversion, check_dataset report and exit codes, demo-data tiling."""
import json
from pathlib import Path

import numpy as np
import pytest

from data.tools.check import check_dataset
from data.coco import CocoDetection
from data.tools.demo import tile_boxes, tile_spans
from data.errors import DatasetError
from data.tools.voc import parse_voc_xml, voc_to_coco
from tests.fixtures.bad_inputs import noisy_jpeg, zero_middle_quarter
from tests.fixtures.script_loader import load_script
from tests.fixtures.synthetic import write_synthetic_coco

REPO = Path(__file__).resolve().parents[2]


def _script(name):
    """Imports scripts/<name>.py as a module (its main(argv) runs in-process: fast, no torch re-import)."""
    return load_script(f"scripts/{name}.py")

VOC_XML = """<annotation><filename>a.png</filename><size><width>400</width><height>300</height><depth>3</depth></size>
<object><name>Alive</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>11</ymin><xmax>10</xmax><ymax>30</ymax></bndbox></object>
<object><name>Dead</name><difficult>1</difficult><bndbox><xmin>101</xmin><ymin>1</ymin><xmax>400</xmax><ymax>300</ymax></bndbox></object>
</annotation>"""


def test_parse_voc_one_based_to_continuous():
    ann = parse_voc_xml(VOC_XML, "a.xml")
    assert (ann.filename, ann.width, ann.height) == ("a.png", 400, 300)
    assert ann.objects[0].box == (0.0, 10.0, 10.0, 30.0) and not ann.objects[0].difficult
    assert ann.objects[1].box == (100.0, 0.0, 400.0, 300.0) and ann.objects[1].difficult
    assert parse_voc_xml(VOC_XML, one_based=False).objects[0].box == (1.0, 11.0, 10.0, 30.0)


def test_voc_to_coco_hand_computed():
    ann = parse_voc_xml(VOC_XML, "a.xml")
    coco, report = voc_to_coco([ann], ["tree"], {"Alive": "tree", "Dead": "tree"})
    assert report.problems == [] and report.summary() == "no bad boxes or images"
    assert coco["categories"] == [{"id": 1, "name": "tree", "supercategory": "tree"}]
    assert coco["images"] == [{"id": 1, "file_name": "a.png", "width": 400, "height": 300}]
    first, second = coco["annotations"]
    assert first["bbox"] == [0.0, 10.0, 10.0, 20.0] and first["area"] == 200.0 and first["iscrowd"] == 0
    assert second["iscrowd"] == 1 and second["category_id"] == 1
    assert len(voc_to_coco([ann], ["tree"], {"Alive": "tree", "Dead": "tree"}, difficult="drop")[0]["annotations"]) == 1
    assert [c["name"] for c in voc_to_coco([ann])[0]["categories"]] == ["Alive", "Dead"]


def test_voc_errors_name_file_and_element():
    with pytest.raises(DatasetError, match="b.xml: malformed XML"):
        parse_voc_xml("<annotation>", "b.xml")
    with pytest.raises(DatasetError, match=r"b.xml: <object> #0 <xmin> is not a number"):
        parse_voc_xml(VOC_XML.replace("<xmin>1</xmin>", "<xmin>x</xmin>"), "b.xml")
    with pytest.raises(DatasetError, match="a.xml: class 'Dead' is not in categories"):
        voc_to_coco([parse_voc_xml(VOC_XML, "a.xml")], ["Alive"])


def test_voc_to_coco_script_output_loads_as_dataset(tmp_path, capsys):
    (tmp_path / "a.xml").write_text(VOC_XML)
    out = tmp_path / "annotations" / "instances_train.json"
    main = _script("voc_to_coco").main
    assert main(["--xml-dir", str(tmp_path), "--out", str(out), "--map", "Alive=tree", "--map", "Dead=tree"]) == 0
    (tmp_path / "train").mkdir()
    ds = CocoDetection(ann_file=out, img_dir=tmp_path / "train", transforms=None, train=False)
    assert ds.class_names == ["tree"] and ds.records[0].boxes.tolist() == [[0, 10, 10, 30]]
    assert ds.records[0].crowd_boxes.tolist() == [[100, 0, 400, 300]]
    capsys.readouterr()
    assert main([str(tmp_path / "a.xml"), "--out", str(out), "--categories", "Alive"]) == 1
    assert "error: a.xml" in capsys.readouterr().err.replace(str(tmp_path) + "/", "")


def test_check_dataset_report_and_exit_codes(tmp_path, capsys):
    write_synthetic_coco(tmp_path, "train", num_images=3, size=(40, 60))
    report = check_dataset(tmp_path, "train")
    assert not report.fatal and report.num_images == 3 and sum(report.boxes_per_class.values()) == 9
    assert report.size_histogram == {"0-255": 3}
    main = _script("check_dataset").main
    argv = ["--root", str(tmp_path), "--split", "train"]
    assert main(argv) == 0 and "OK: no fatal problems" in capsys.readouterr().out
    data = (tmp_path / "train" / "000002.png").read_bytes()
    (tmp_path / "train" / "000002.png").write_bytes(data[:-30])
    report = check_dataset(tmp_path, "train", decode=False)
    assert report.fatal and len(report.unreadable) == 1 and "000002.png: truncated PNG" in report.unreadable[0]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "FATAL" in out and "000002.png" in out
    (tmp_path / "train" / "000002.png").write_bytes(data)
    # a JPEG zeroed in the middle (end marker kept) decodes with only a libjpeg warning: a bad image too
    coco = json.loads((tmp_path / "annotations" / "instances_train.json").read_text())
    coco["images"][0].update(file_name="000001.jpg", height=120, width=160)
    (tmp_path / "annotations" / "instances_train.json").write_text(json.dumps(coco))
    (tmp_path / "train" / "000001.jpg").write_bytes(zero_middle_quarter(noisy_jpeg()))
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "000001.jpg: corrupt image data (decoder: Corrupt JPEG data" in out and "FATAL" in out
    (tmp_path / "annotations" / "instances_train.json").write_text("{")
    assert main(argv) == 1
    out = capsys.readouterr().out
    # no summary of an index that could not be read (it would say "0 images, 0 boxes")
    assert out.splitlines() == [f"split train: FATAL: {tmp_path / 'annotations' / 'instances_train.json'}: "
                                "malformed JSON at line 1, column 2: Expecting property name enclosed in double quotes"]


def test_check_dataset_lists_the_ids_of_the_degenerate_boxes_it_drops(tmp_path):
    write_synthetic_coco(tmp_path, "train", num_images=2, size=(40, 60))
    ann_file = tmp_path / "annotations" / "instances_train.json"
    coco = json.loads(ann_file.read_text())
    coco["annotations"][1]["bbox"][2] = 0.5
    coco["annotations"][4]["bbox"][3] = 0
    ann_file.write_text(json.dumps(coco))
    text = check_dataset(tmp_path, "train").format()
    ids = [coco["annotations"][1]["id"], coco["annotations"][4]["id"]]
    assert "2 degenerate (dropped)" in text
    assert f"degenerate boxes dropped (< 1 px wide or high), annotation ids: {ids[0]}, {ids[1]}" in text


def test_tile_spans_cover_without_overlap():
    assert tile_spans(1249, 400) == [(0, 416), (416, 833), (833, 1249)]
    assert tile_spans(300, 400) == [(0, 300)]
    for length in (399, 400, 401, 1035, 2472):
        spans = tile_spans(length, 400)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_tile_boxes_clip_keep_and_ignore():
    boxes = np.array([[10, 10, 30, 30],     # inside
                      [90, 10, 130, 30],    # 25% inside tile [0, 100): ignore region
                      [80, 50, 110, 70],    # 2/3 inside: kept, clipped
                      [200, 200, 210, 210]]) # other tile
    kept, ignored = tile_boxes(boxes, (0, 0), (100, 100))
    assert kept.tolist() == [[10, 10, 30, 30], [80, 50, 100, 70]]
    assert ignored.tolist() == [[90, 10, 100, 30]]
    kept, _ = tile_boxes(boxes, (100, 0), (100, 100))
    assert kept.tolist() == [[0, 10, 30, 30]]


def test_prepare_demo_data_from_a_fake_wheel(tmp_path, capsys):
    import zipfile

    import cv2

    module = _script("prepare_demo_data")
    wheel = tmp_path / "deepforest-0-py3-none-any.whl"
    sizes = {}
    with zipfile.ZipFile(wheel, "w") as z:
        for stem in sorted({source[0] for source in module.SOURCES}):
            h, w = (120, 100) if "528000" in stem else (40, 40)
            sizes[stem] = (h, w)
            ok, png = cv2.imencode(".png", np.full((h, w, 3), 128, np.uint8))
            z.writestr(f"deepforest/data/{stem}.png", png.tobytes())
            z.writestr(f"deepforest/data/{stem}.xml", VOC_XML.replace("<width>400</width><height>300</height>",
                       f"<width>{w}</width><height>{h}</height>").replace("<xmax>400</xmax><ymax>300</ymax>",
                       f"<xmax>{w}</xmax><ymax>{h}</ymax>").replace("<xmin>101</xmin>", "<xmin>5</xmin>"))
    out = tmp_path / "trees"
    assert module.main(["--wheel", str(wheel), "--out", str(out), "--tile", "20"]) == 0
    train = json.loads((out / "annotations" / "instances_train.json").read_text())
    val = json.loads((out / "annotations" / "instances_val.json").read_text())
    assert train["categories"] == val["categories"] == [{"id": 1, "name": "tree", "supercategory": "tree"}]
    # 120x100 at tile 20 -> 6x5 tiles: 5 rows train, 1 row val; each 40x40 image -> 2x2 tiles.
    assert len(train["images"]) == 5 * 5 + 4 and len(val["images"]) == 1 * 5 + 4 + 4
    names = [i["file_name"] for i in train["images"] + val["images"]]
    assert len(set(names)) == len(names) and all((out / s / i["file_name"]).is_file()
                                                  for s, d in (("train", train), ("val", val)) for i in d["images"])
    for d in (train, val):
        sizes_by_id = {i["id"]: (i["width"], i["height"]) for i in d["images"]}
        for a in d["annotations"]:
            x, y, w, h = a["bbox"]
            iw, ih = sizes_by_id[a["image_id"]]
            assert x >= 0 and y >= 0 and x + w <= iw + 1e-6 and y + h <= ih + 1e-6 and w >= 1 and h >= 1
    capsys.readouterr()
    assert module.main(["--wheel", str(wheel), "--out", str(out)]) == 0
    assert "already prepared; skipping" in capsys.readouterr().out
