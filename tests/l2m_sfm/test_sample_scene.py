"""The sample scene renderer: GT model, depth consistent with the cameras, committed copy present."""
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from l2m_sfm import sample_scene

SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "toybox"


@pytest.fixture(scope="module")
def small_scene(tmp_path_factory):
    out = tmp_path_factory.mktemp("scene")
    return sample_scene.main({"num_views": 3, "width": 160, "height": 120, "focal": 130.0, "supersample": 1}, out)


def test_outputs_and_gt_model(small_scene):
    names = sorted(p.name for p in (small_scene / "images").iterdir())
    assert names == ["view_00.jpg", "view_01.jpg", "view_02.jpg"]
    gt = pycolmap.Reconstruction(str(small_scene / "gt"))
    assert len(gt.images) == 3 and gt.num_points3D() == 0
    cam = gt.cameras[1]
    assert (cam.width, cam.height) == (160, 120)
    np.testing.assert_allclose(cam.params, [130, 130, 80, 60])
    depth = sample_scene.load_depth(small_scene / "depth" / "view_01.npz")
    assert depth.dtype == np.float32 and depth.shape == (120, 160)
    assert 0.5 < (depth > 0).mean() < 1.0  # mostly scene, some background


def test_depth_matches_ray_plane_intersection(small_scene):
    """The depth of the floor (z = 0) at a pixel equals the analytic ray-plane intersection."""
    gt = pycolmap.Reconstruction(str(small_scene / "gt"))
    image = gt.find_image_with_name("view_00.jpg")
    K = gt.cameras[image.camera_id].calibration_matrix()
    T = image.cam_from_world().matrix()
    R, t = T[:, :3], T[:, 3]
    depth = sample_scene.load_depth(small_scene / "depth" / "view_00.npz")
    u, v = 20, 110  # bottom-left: floor
    ray = R.T @ np.linalg.solve(K, [u + 0.5, v + 0.5, 1.0])  # z_cam = 1 parametrisation
    center = -R.T @ t
    expected = -center[2] / ray[2]
    assert depth[v, u] == pytest.approx(expected, rel=1e-4)


def test_look_at_is_a_rotation():
    R, t = sample_scene.look_at(np.array([1.0, -3.0, 1.5]), np.zeros(3))
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    # the target lies on the optical axis, in front of the camera
    x = R @ np.zeros(3) + t
    assert x[2] > 0 and abs(x[0]) < 1e-12 and abs(x[1]) < 1e-12


def test_committed_sample_is_small_and_complete():
    if not SAMPLE.exists():
        pytest.skip(f"{SAMPLE} not generated (python -m l2m_sfm.sample_scene --output {SAMPLE})")
    gt = pycolmap.Reconstruction(str(SAMPLE / "gt"))
    assert len(gt.images) == 8
    for image in gt.images.values():
        assert (SAMPLE / "images" / image.name).exists()
        assert (SAMPLE / "depth" / (Path(image.name).stem + ".npz")).exists()
    size = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert size < 4e6
