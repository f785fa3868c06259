"""Shared fixtures: paths to the read-only ../shared folder (tests using them skip when it is absent)."""
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def _shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is only present beside a checkout in CI/dev)")
    return path


@pytest.fixture(scope="session")
def loss_reference_dir() -> Path:
    """Folder of the authors' loss reference vectors (.npz)."""
    return _shared_path("reference", "losses")


@pytest.fixture(scope="session")
def eval_reference_dir() -> Path:
    """Folder of the authors' evaluator reference cases."""
    return _shared_path("reference", "eval")


@pytest.fixture(scope="session")
def coco_mini_root() -> Path:
    """Root of the real COCO 2017 subset (train2017/, val2017/, annotations/)."""
    return _shared_path("data", "coco-mini")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (tiny tensors: faster, and far faster on a shared, busy CPU).

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")`` or as a test argument.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
