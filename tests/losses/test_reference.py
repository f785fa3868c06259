"""scripts/check_loss_reference.py on the authors' reference vectors, and its failure reporting."""
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_loss_reference.py"


def run(*paths) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, paths)], capture_output=True, text=True,
                          timeout=300)


def test_all_reference_cases_pass(loss_reference_dir):
    files = sorted(loss_reference_dir.glob("*.npz"))
    assert files, f"no .npz in {loss_reference_dir}"
    proc = run(loss_reference_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(files)}/{len(files)} files PASS" in proc.stdout
    assert "FAIL" not in proc.stdout
    for key in ("alrp_cls_loss", "alrp_loc_loss", "alrp_rank", "alrp_grad", "ap_loss", "ap_grad"):
        assert proc.stdout.count(key) == len(files)


def test_wrong_values_and_missing_keys_fail(loss_reference_dir, tmp_path):
    with np.load(sorted(loss_reference_dir.glob("*.npz"))[0]) as npz:
        data = {k: npz[k] for k in npz.files}
    data["alrp_grad"] = data["alrp_grad"] * 1.01 + 1e-3
    np.savez(tmp_path / "perturbed.npz", **data)
    del data["ap_grad"]
    np.savez(tmp_path / "incomplete.npz", **data)
    proc = run(tmp_path)
    assert proc.returncode == 1
    assert "alrp_grad" in proc.stdout and "ap_grad" in proc.stdout and "0/2 files PASS" in proc.stdout
    assert "missing keys ['ap_grad']" in proc.stdout


def test_missing_path_is_an_error(tmp_path):
    proc = run(tmp_path / "nope.npz")
    assert proc.returncode == 1 and "nope.npz" in proc.stderr


def test_corrupt_file_is_reported_by_name(tmp_path):
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip archive")
    proc = run(tmp_path / "corrupt.npz")
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert "corrupt.npz: FAIL" in proc.stdout and "not an .npz archive" in proc.stdout
