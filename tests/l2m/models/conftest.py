"""Fixtures: small random-init L2M models (helpers in l2m_test_models.py)."""
from __future__ import annotations

import numpy as np
import pytest

from l2m.models.matcher import L2M
from l2m_test_models import build_micro, textured_pair


@pytest.fixture(scope="session")
def micro_model() -> L2M:
    return build_micro()


@pytest.fixture(scope="session")
def pair() -> tuple[np.ndarray, np.ndarray]:
    return textured_pair()
