"""Co-visibility of GT cameras from their frustums."""
from pathlib import Path

import numpy as np
import pycolmap

from l2m_sfm.covisibility import covisible_pairs

TOYBOX_GT = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "toybox" / "gt"


def _model(tmp_path: Path, poses: list[tuple[np.ndarray, np.ndarray]]) -> pycolmap.Reconstruction:
    """Pinhole 640x480 cameras, world-to-camera (R, t) each, written as a COLMAP text model and read back."""
    (tmp_path / "cameras.txt").write_text("1 PINHOLE 640 480 500 500 320 240\n")
    lines = []
    for i, (R, t) in enumerate(poses, start=1):
        x, y, z, w = pycolmap.Rotation3d(R).quat  # pycolmap order (x, y, z, w)
        lines += [f"{i} {w} {x} {y} {z} {t[0]} {t[1]} {t[2]} 1 {i}.jpg", ""]
    (tmp_path / "images.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "points3D.txt").write_text("")
    return pycolmap.Reconstruction(str(tmp_path))


def _yaw(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def test_sample_scene_pairs_all_share_a_view():
    shares = covisible_pairs(pycolmap.Reconstruction(str(TOYBOX_GT)))
    assert len(shares) == 28 and min(shares.values()) > 0.5


def test_cameras_looking_away_share_nothing_and_a_turntable_neighbour_shares_much(tmp_path):
    # three cameras on a circle of radius 4 around the origin, looking at it: 0 deg, 20 deg and 180 deg
    poses = []
    for deg in (0, 20, 180):
        R = _yaw(deg)
        centre = -R.T @ np.array([0, 0, 4.0])  # camera z-axis through the origin
        poses.append((R, -R @ centre))
    # a fourth camera at the first one's place looking outwards (away from the scene)
    R = _yaw(180)
    poses.append((R, -R @ (-_yaw(0).T @ np.array([0, 0, 4.0]))))
    shares = covisible_pairs(_model(tmp_path, poses))
    assert shares[("1.jpg", "2.jpg")] > 0.5
    assert shares[("1.jpg", "4.jpg")] < 0.05
    assert shares[("1.jpg", "3.jpg")] == 0.0  # opposite sides of a turntable: same plane in view, not same surface
