"""scripts/get_coco.py / get_coco.sh, offline: small archives served from a temporary folder (file://)."""
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.fixtures.script_loader import REPO, load_script

get_coco = load_script("scripts/get_coco.py")


def _instances(file_names, with_annotations=True):
    images = [{"id": i + 1, "file_name": f, "width": 64, "height": 48} for i, f in enumerate(file_names)]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 4, 20, 16], "area": 320, "iscrowd": 0}
            for i in range(len(file_names))] if with_annotations else None
    data = {"images": images, "categories": [{"id": 1, "name": "thing"}]}
    if anns is not None:
        data["annotations"] = anns
    return json.dumps(data)


@pytest.fixture
def mirror(tmp_path):
    """A folder laid out like images.cocodataset.org with tiny archives; returns (base URL, md5 file, archives)."""
    root = tmp_path / "mirror"
    (root / "zips").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    names = ["000000000001.jpg", "000000000002.jpg"]
    with zipfile.ZipFile(root / "zips" / "val2017.zip", "w") as zf:
        for name in names:
            ok, buf = cv2.imencode(".jpg", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
            zf.writestr(f"val2017/{name}", buf.tobytes())
    with zipfile.ZipFile(root / "annotations" / "annotations_trainval2017.zip", "w") as zf:
        zf.writestr("annotations/instances_val2017.json", _instances(names))
        zf.writestr("annotations/instances_train2017.json", _instances([]))
    with zipfile.ZipFile(root / "annotations" / "image_info_test2017.zip", "w") as zf:
        zf.writestr("annotations/image_info_test-dev2017.json", _instances(names, with_annotations=False))
    archives = {p.name: p for p in root.rglob("*.zip")}
    sums = tmp_path / "md5.txt"
    sums.write_text("".join(f"{hashlib.md5(p.read_bytes()).hexdigest()}  {n}\n" for n, p in archives.items()))
    return root.as_uri() + "/", sums, archives


PARTS = ["--only", "annotations", "test-dev-info", "val2017"]


def test_download_verify_unpack_check_and_rerun(tmp_path, mirror, capsys):
    base, sums, _ = mirror
    dest = tmp_path / "coco"
    assert get_coco.main([str(dest), *PARTS, "--base-url", base, "--checksums", str(sums), "--no-progress"]) == 0
    assert sorted(p.name for p in (dest / "val2017").iterdir()) == ["000000000001.jpg", "000000000002.jpg"]
    for f in ("instances_val2017.json", "instances_train2017.json", "image_info_test-dev2017.json"):
        assert (dest / "annotations" / f).is_file()
    assert not list((dest / "downloads").glob("*.zip"))  # archives removed after unpacking (no --keep-archives)
    assert "md5 ok" in capsys.readouterr().out
    # the layout is what data/ reads
    import data
    ds = data.build_dataset(data.DataConfig(root=str(dest)), "val2017", train=False)
    assert len(ds) == 2 and ds[0][0].shape[0] == 3
    # a rerun does nothing
    assert get_coco.main([str(dest), *PARTS, "--base-url", base, "--checksums", str(sums), "--no-progress"]) == 0
    assert capsys.readouterr().out.count("already in place") == 3


def test_partial_download_resumes_where_it_stopped(tmp_path, mirror):
    base, _, archives = mirror
    source = archives["val2017.zip"]
    target = tmp_path / "dl" / "val2017.zip"
    target.parent.mkdir()
    half = source.stat().st_size // 2
    target.with_name("val2017.zip.part").write_bytes(source.read_bytes()[:half])
    fetched = get_coco.download(base + "zips/val2017.zip", target, show_progress=False)
    assert fetched == source.stat().st_size - half  # only the rest was read
    assert target.read_bytes() == source.read_bytes() and not target.with_name("val2017.zip.part").exists()


def test_checksum_mismatch_fails_naming_the_archive_and_unpacks_nothing(tmp_path, mirror, capsys):
    base, sums, _ = mirror
    lines = [("0" * 32 + "  val2017.zip") if line.endswith("val2017.zip") else line
             for line in sums.read_text().splitlines()]
    sums.write_text("\n".join(lines) + "\n")
    dest = tmp_path / "coco"
    assert get_coco.main([str(dest), "--only", "val2017", "--base-url", base, "--checksums", str(sums),
                          "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checksum mismatch for val2017.zip" in err and "0" * 32 in err
    assert not (dest / "val2017").exists() and (dest / "downloads" / "val2017.zip.bad").is_file()


def test_official_table_is_used_without_override(tmp_path, mirror, capsys):
    """Without --checksums the built-in (official) MD5 applies, so a foreign archive is rejected."""
    base, _, _ = mirror
    assert get_coco.main([str(tmp_path / "coco"), "--only", "annotations", "--base-url", base,
                          "--no-progress"]) == 1
    assert f"expected {get_coco.ARCHIVES['annotations'].md5}" in capsys.readouterr().err


def test_shell_wrapper_and_bad_arguments(tmp_path, mirror):
    base, sums, _ = mirror
    proc = subprocess.run(["bash", str(REPO / "scripts" / "get_coco.sh"), str(tmp_path / "c"), *PARTS,
                           "--base-url", base, "--checksums", str(sums), "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "c" / "annotations" / "image_info_test-dev2017.json").is_file()
    assert "val2017" in proc.stdout  # check_dataset.py's report
    bad = subprocess.run([sys.executable, str(REPO / "scripts" / "get_coco.py"), str(tmp_path / "d"),
                          "--base-url", "ftp://x/"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--base-url" in bad.stderr
