"""Imports a repository script (scripts/*.py, benchmarks/*.py) as a module, for tests of its functions."""
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(relative_path: str) -> ModuleType:
    """Executes `REPO/relative_path` as module `_script_<stem>` (registered in sys.modules for dataclasses)."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
