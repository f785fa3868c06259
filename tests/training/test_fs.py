"""training/fs.py: the lock that serialises read-modify-write of files shared by concurrent processes."""
import pytest

from tests.fixtures.locks import lock_is_free
from training.fs import exclusive_lock


def test_the_lock_excludes_a_second_holder_until_released_and_creates_its_folders(tmp_path):
    path = tmp_path / "new" / "folder" / ".lock"
    with exclusive_lock(path):
        assert path.is_file()
        assert not lock_is_free(path)
    assert lock_is_free(path)


def test_the_lock_is_released_when_the_body_raises(tmp_path):
    path = tmp_path / ".lock"
    with pytest.raises(RuntimeError):
        with exclusive_lock(path):
            raise RuntimeError("body failed")
    assert lock_is_free(path)
