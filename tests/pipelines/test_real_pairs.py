"""pipelines/real_pairs.py: held-out validation scenes for task.real_val and the scene benchmark."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from l2m_sfm import sample_scene
from l2m.data.benchmark_pairs import load_scene

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pipelines"))
import real_pairs  # noqa: E402


def _distorted_scene(root: Path) -> Path:
    """The rendered sample scene with its camera re-declared SIMPLE_RADIAL (k = 0.05), like a SIFT model."""
    scene = sample_scene.main({"num_views": 5, "width": 96, "height": 72, "focal": 80.0, "supersample": 1}, root)
    rec = pycolmap.Reconstruction(str(scene / "gt"))
    for cam in rec.cameras.values():
        fx, fy, cx, cy = cam.params
        cam.model = pycolmap.CameraModelId.SIMPLE_RADIAL
        cam.params = [fx, cx, cy, 0.05]
    rec.write(str(scene / "gt"))
    return scene


def test_validation_scene_is_undistorted_with_gap3_pairs_and_loads_in_the_benchmark(tmp_path):
    scene = _distorted_scene(tmp_path / "scene")
    val = real_pairs.validation_scene(scene / "images", scene / "gt", tmp_path / "val" / "toy")
    rec = pycolmap.Reconstruction(str(val / "gt"))
    assert {c.model.name for c in rec.cameras.values()} == {"PINHOLE"} and len(rec.images) == 5
    assert sorted(p.name for p in (val / "images").iterdir()) == sorted(im.name for im in rec.images.values())
    assert not (val / "stereo").exists() and not (tmp_path / "val" / "toy.tmp").exists()
    names = sorted(im.name for im in rec.images.values())
    pairs = [tuple(ln.split()) for ln in (val / "pairs.txt").read_text().splitlines()]
    assert len(pairs) == 9 and (names[0], names[3]) in pairs and (names[0], names[4]) not in pairs
    loaded = load_scene(val)  # what scene_benchmark.py and task.real_val read
    assert [(p.name0, p.name1) for p in loaded] == pairs
    assert all(np.allclose(p.T_0to1[3], [0, 0, 0, 1]) for p in loaded)
    (val / "pairs.txt").write_text("kept")
    assert real_pairs.validation_scene(scene / "images", scene / "gt", val) == val  # done once, not redone
    assert (val / "pairs.txt").read_text() == "kept"


def test_unknown_hold_out_scene_is_refused(tmp_path):
    (tmp_path / "sfm_smoke" / "kermit" / "images").mkdir(parents=True)
    with pytest.raises(SystemExit):
        real_pairs.main(["--data", str(tmp_path), "--output", str(tmp_path / "out"), "--hold-out", "nope"])
    assert not (tmp_path / "out").exists()
