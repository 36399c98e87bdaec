"""l2m.train.real_val: stage-2 validation by relative-pose AUC on a scene with ground-truth cameras."""
from __future__ import annotations

import pycolmap
import pytest

from l2m.models.zoo import build_model
from l2m.train.real_val import pose_auc_on_scene
from l2m_sfm import sample_scene
from l2m.data.benchmark_pairs import BenchmarkDataError


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return sample_scene.main({"num_views": 3, "width": 320, "height": 240, "supersample": 1},
                             tmp_path_factory.mktemp("rv"))


def test_bundled_weights_recover_the_rendered_poses(scene):
    model = build_model("l2m-tiny")
    model.train()
    res = pose_auc_on_scene(model, {"scene": str(scene), "max_pairs": 3, "num_samples": 1000})
    assert res["pose_pairs"] == 3  # all i<j, j-i <= 3 of three views
    assert res["pose_auc@10"] > 0.8 and res["pose_auc@5"] <= res["pose_auc@10"] <= res["pose_auc@20"]
    assert model.training  # the caller's mode is restored


def test_distorted_cameras_are_refused_with_the_model_name(scene, tmp_path):
    rec = pycolmap.Reconstruction(str(scene / "gt"))
    for cam in rec.cameras.values():
        cam.model = pycolmap.CameraModelId.SIMPLE_RADIAL
        cam.params = [cam.params[0], cam.params[2], cam.params[3], 0.1]
    (tmp_path / "gt").mkdir()
    rec.write(str(tmp_path / "gt"))
    (tmp_path / "images").symlink_to(scene / "images")
    with pytest.raises(BenchmarkDataError, match="SIMPLE_RADIAL"):
        pose_auc_on_scene(build_model("l2m-tiny"), {"scene": str(tmp_path)})
