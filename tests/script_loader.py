"""Import one of the repository's scripts (benchmarks/*.py, pipelines/*.py: scripts, not packages) as a module."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(relpath: str) -> ModuleType:
    """Execute REPO/<relpath> as a fresh module (named after the path, e.g. pipelines_scene_benchmark; not put in
    sys.modules)."""
    path = REPO / relpath
    spec = importlib.util.spec_from_file_location(relpath.removesuffix(".py").replace("/", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
