"""Evaluation against GT: similarity-invariant, robust to an outlier camera, AUC with unregistered images."""
import json
import math
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from l2m_sfm import evaluate
from l2m.evaluation.metrics import pose_auc

SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "toybox"


@pytest.fixture()
def gt():
    if not SAMPLE.exists():
        pytest.skip(f"sample scene {SAMPLE} missing")
    return pycolmap.Reconstruction(str(SAMPLE / "gt"))


def _transformed(gt):
    model = pycolmap.Reconstruction(gt)
    q = np.array([0.1, -0.3, 0.2, 0.9])
    model.transform(pycolmap.Sim3d(3.7, pycolmap.Rotation3d(q / np.linalg.norm(q)), np.array([5.0, -2.0, 1.0])))
    return model


def test_gt_against_itself_under_similarity(gt):
    r = evaluate.evaluate(_transformed(gt), gt)
    assert r["num_registered"] == r["num_gt_images"] == 8
    assert r["median_center_error"] < 1e-9 and r["max_rotation_error_deg"] < 1e-3
    assert r["alignment"]["scale"] == pytest.approx(1 / 3.7)
    assert all(v == pytest.approx(1.0, abs=1e-4) for v in r["auc"].values())  # arccos precision
    assert r["num_pairs"] == 28


def test_unregistered_image_counts_as_failure(gt):
    model = _transformed(gt)
    dropped = model.find_image_with_name("view_03.jpg")
    model.deregister_frame(dropped.frame_id)
    r = evaluate.evaluate(model, gt)
    assert r["num_registered"] == 7 and r["unregistered"] == ["view_03.jpg"]
    # 7 of 28 pairs involve view_03 -> infinite error; the rest are exact
    expected = pose_auc([0.0] * 21 + [math.inf] * 7)
    assert list(r["auc"].values()) == pytest.approx(expected, abs=1e-4)
    assert r["auc"]["@5"] == pytest.approx(0.75, abs=1e-4)
    row = next(x for x in r["per_image"] if x["name"] == "view_03.jpg")
    assert not row["registered"] and math.isinf(row["rotation_error_deg"])


def test_robust_alignment_ignores_an_outlier_camera(gt):
    model = _transformed(gt)
    bad = model.find_image_with_name("view_05.jpg")
    pose = bad.cam_from_world()
    frame = model.frames[bad.frame_id]
    frame.set_cam_from_world(bad.camera_id, pycolmap.Rigid3d(pose.rotation, pose.translation + np.array([9.0, 0, 0])))
    r = evaluate.evaluate(model, gt)
    errors = {x["name"]: x["center_error"] for x in r["per_image"]}
    assert r["alignment"]["inliers"] == 7
    assert max(v for k, v in errors.items() if k != "view_05.jpg") < 1e-6
    assert errors["view_05.jpg"] > 1.0
    assert r["median_rotation_error_deg"] < 1e-3


def test_cli_writes_standard_json(gt, tmp_path, capsys):
    model = _transformed(gt)
    (tmp_path / "m").mkdir()
    model.write(str(tmp_path / "m"))
    assert evaluate.main(["--model", str(tmp_path / "m"), "--gt", str(SAMPLE / "gt"),
                          "--output", str(tmp_path / "e.json")]) == 0
    assert "registered 8/8" in capsys.readouterr().out
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["auc"]["@20"] == pytest.approx(1.0, abs=1e-4)
