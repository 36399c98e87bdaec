"""Shared fixtures. pytest puts this folder on sys.path (rootdir conftest, no __init__.py), so the helper modules
beside it (browser, script_loader) import by name from any test."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

VENDORED_HLOC = Path(__file__).resolve().parents[1] / ".." / "shared" / "vendor" / "hloc"


@pytest.fixture()
def vendored_hloc() -> Iterator[Path]:
    """The unchanged upstream hloc of ../shared/vendor importable for one test (skips when absent)."""
    if not (VENDORED_HLOC / "hloc").is_dir():
        pytest.skip(f"vendored hloc not found at {VENDORED_HLOC}")
    pytest.importorskip("scipy", reason="hloc needs scipy")
    sys.path.insert(0, str(VENDORED_HLOC))
    try:
        yield VENDORED_HLOC
    finally:
        sys.path.remove(str(VENDORED_HLOC))
