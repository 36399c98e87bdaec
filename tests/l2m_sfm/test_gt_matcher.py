"""Ground-truth matcher: exact epipolar geometry, cycle consistency, resized inputs."""
from pathlib import Path

import numpy as np
import pytest

from l2m_sfm.gt_matcher import GTMatcher
from l2m_sfm.matchers import PairMatcher

SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "toybox"


@pytest.fixture(scope="module")
def matcher():
    if not SAMPLE.exists():
        pytest.skip(f"sample scene {SAMPLE} missing")
    return GTMatcher({"scene": SAMPLE, "step": 8})


def _fundamental(m: GTMatcher, a: str, b: str) -> np.ndarray:
    ia, ib = m.model.find_image_with_name(a), m.model.find_image_with_name(b)
    T = (ib.cam_from_world() * ia.cam_from_world().inverse()).matrix()
    t = T[:, 3]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    Ka = m.model.cameras[ia.camera_id].calibration_matrix()
    Kb = m.model.cameras[ib.camera_id].calibration_matrix()
    return np.linalg.inv(Kb).T @ tx @ T[:, :3] @ np.linalg.inv(Ka)


def test_protocol_and_epipolar_exactness(matcher):
    assert isinstance(matcher, PairMatcher) and matcher.dense
    img = np.zeros((480, 640, 3), np.uint8)
    r = matcher.match_pair(img, img, "view_01.jpg", "view_03.jpg")
    assert len(r) > 2000
    F = _fundamental(matcher, "view_01.jpg", "view_03.jpg")
    x0 = np.c_[r.keypoints0 + 0.5, np.ones(len(r))]  # hloc -> COLMAP pixels
    x1 = np.c_[r.keypoints1 + 0.5, np.ones(len(r))]
    lines = x0 @ F.T
    dist = np.abs((x1 * lines).sum(1)) / np.hypot(lines[:, 0], lines[:, 1])
    assert np.median(dist) < 1e-3 and dist.max() < 0.05


def test_cycle_consistency_and_resized_input(matcher):
    img = np.zeros((480, 640, 3), np.uint8)
    fwd = matcher.match_pair(img, img, "view_02.jpg", "view_04.jpg")
    # a half-size image 0 gives correspondences in half-size pixels: back in full pixels they are exact
    small = np.zeros((240, 320, 3), np.uint8)
    half = matcher.match_pair(small, img, "view_02.jpg", "view_04.jpg")
    assert 0.2 < len(half) / len(fwd) < 0.3  # same grid step on a 4x smaller image
    F = _fundamental(matcher, "view_02.jpg", "view_04.jpg")
    x0 = np.c_[(half.keypoints0 + 0.5) * 2, np.ones(len(half))]
    x1 = np.c_[half.keypoints1 + 0.5, np.ones(len(half))]
    lines = x0 @ F.T
    assert np.median(np.abs((x1 * lines).sum(1)) / np.hypot(lines[:, 0], lines[:, 1])) < 1e-3
    # lifting image-1 points back into image 0 returns the original grid points
    X, ok = matcher.lift("view_04.jpg", fwd.keypoints1.astype(np.float64))
    back, vis = matcher.project("view_02.jpg", X)
    good = ok & vis
    assert good.mean() > 0.9
    np.testing.assert_allclose(back[good], fwd.keypoints0[good], atol=0.05)


def test_unknown_image_is_a_clear_error(matcher):
    img = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(KeyError, match="not in"):
        matcher.match_pair(img, img, "nope.jpg", "view_00.jpg")
