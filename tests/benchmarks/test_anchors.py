"""benchmarks/anchors.py: the default rule of issue 23 and the agreement-with-SIFT column, on recorded rows."""
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from script_loader import load_script

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "datasets" / "samples" / "toybox"


def _row(scene: str, config: str, registered: int, seconds: float, rot: float | None = None) -> dict:
    row = {"scene": scene, "config": config, "registered": registered, "images": 10, "wall_seconds": seconds}
    if rot is not None:
        row.update(median_rotation_error_deg=rot, auc10=1 - rot / 10)
    return row


def test_default_is_the_most_accurate_configuration_within_the_time_and_registration_rules():
    anchors = load_script("benchmarks/anchors.py")
    rows = [_row("gt", "sift", 10, 10, rot=0.10), _row("smoke", "sift", 9, 10),
            _row("gt", "slow", 10, 50, rot=0.01), _row("smoke", "slow", 10, 50),          # 5x time: out
            _row("gt", "loses", 10, 12, rot=0.02), _row("smoke", "loses", 8, 12),          # registers less: out
            _row("gt", "good", 10, 25, rot=0.05), _row("smoke", "good", 9, 30)]            # 2.75x: in
    decision = anchors.choose_default(rows)
    assert decision["scenes"] == ["gt", "smoke"] and decision["smoke_scenes"] == ["smoke"]
    assert decision["most_accurate"] == "slow"
    assert decision["summary"]["good"]["time_ratio"] == pytest.approx(2.75)
    assert not decision["summary"]["loses"]["smoke_ok"] and not decision["summary"]["slow"]["eligible"]
    assert decision["default"] == "good"
    # nothing eligible but the baseline -> the baseline
    assert anchors.choose_default([r for r in rows if r["config"] != "good"])["default"] == "sift"
    # a scene some configuration has not run is left out, so every configuration is judged on the same scenes
    assert anchors.choose_default(rows + [_row("other", "sift", 10, 1)])["scenes"] == ["gt", "smoke"]


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"sample scene {SAMPLE} missing")
def test_agreement_with_the_sift_model_flags_a_wrong_model(tmp_path):
    anchors = load_script("benchmarks/anchors.py")
    gt = pycolmap.Reconstruction(str(SAMPLE / "gt"))
    wrong = pycolmap.Reconstruction(gt)
    for name in ("view_01.jpg", "view_03.jpg", "view_05.jpg", "view_07.jpg"):  # half the cameras turned by 30 deg
        image = wrong.find_image_with_name(name)
        pose = image.cam_from_world()
        turn = pycolmap.Rotation3d(np.array([0.0, np.sin(np.pi / 12), 0.0, np.cos(np.pi / 12)]))
        wrong.frames[image.frame_id].set_cam_from_world(image.camera_id,
                                                        pycolmap.Rigid3d(turn * pose.rotation, pose.translation))
    rows = []
    for config, model in (("sift", gt), ("same", pycolmap.Reconstruction(gt)), ("wrong", wrong)):
        (tmp_path / config / "sfm").mkdir(parents=True)
        model.write(str(tmp_path / config / "sfm"))
        rows.append({"scene": "smoke", "config": config, "output": str(tmp_path / config)})
    rows.append({"scene": "smoke", "config": "failed", "output": str(tmp_path / "failed")})  # no model: no column
    anchors.agreement_with_baseline(rows, tmp_path)
    by = {r["config"]: r for r in rows}
    assert by["same"]["pair_error_vs_baseline_deg"] < 1e-3 and by["same"]["auc10_vs_baseline"] > 0.999
    assert by["wrong"]["auc10_vs_baseline"] < 0.5 and by["wrong"]["pair_error_vs_baseline_deg"] > 5
    assert "pair_error_vs_baseline_deg" not in by["sift"] and "pair_error_vs_baseline_deg" not in by["failed"]
    assert "against the SIFT model" in anchors.markdown_table(rows)


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"sample scene {SAMPLE} missing")
def test_one_anchored_row_end_to_end(tmp_path):
    """run_one on 3 sample views (tiny random-weight warp): reconstruct, GT columns, ungated scratch database."""
    anchors = load_script("benchmarks/anchors.py")
    images = tmp_path / "images"
    images.mkdir()
    for n in ("view_00.jpg", "view_01.jpg", "view_02.jpg"):
        (images / n).symlink_to(SAMPLE / "images" / n)
    conf = {"matcher": {"name": "l2m-tiny", "conf": {"weights": "random", "coarse_res": 64, "upsample_res": 0}},
            "matching": {"anchors": "sift", "combine": "union"}}
    cov = {("view_00.jpg", "view_01.jpg"): True, ("view_00.jpg", "view_02.jpg"): True,
           ("view_01.jpg", "view_02.jpg"): False}  # pretend one pair shares no view
    row = anchors.run_one("toybox", "union", conf, images, SAMPLE / "gt", tmp_path / "work", cov, False)
    assert "exception" not in row, row.get("error")
    assert row["images"] == 3 and row["registered"] == 3 and "auc10" in row  # GT columns (3 of 8 GT views)
    assert (Path(row["output"]) / "database.ungated.db").exists()
    # the random warp is gated out or adds nothing; the union keeps SIFT's 3 verified pairs, one of them "false"
    assert row["verified_pairs"] == 3 and row["false_verified_pairs"] == 1 and row["covisible_pairs"] == 2
    assert row["gated_pairs"] + row["ungated_verified_pairs"] >= 1
    assert row["wall_seconds"] > 0 and row["network_seconds"] > 0
