"""The environment, data and outputs stay out of git, also when a second clone links them from the first."""
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
KEPT_OUT = (".venv", "datasets", "runs", "checkpoints")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize("as_symlink", [False, True])
def test_the_environment_data_and_runs_are_ignored_as_folders_and_as_links(tmp_path, as_symlink):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copy(REPO_ROOT / ".gitignore", tmp_path / ".gitignore")
    target = tmp_path / "elsewhere"
    target.mkdir()
    for name in KEPT_OUT:
        if as_symlink:
            (tmp_path / name).symlink_to(target, target_is_directory=True)
        else:
            (tmp_path / name).mkdir()
            (tmp_path / name / "x.txt").write_text("x")
    (target / "x.txt").write_text("x")
    (tmp_path / "kept.py").write_text("")
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path, check=True,
                            capture_output=True, text=True).stdout
    untracked = {line[3:] for line in status.splitlines()}
    assert untracked == {".gitignore", "kept.py", "elsewhere/x.txt"}
