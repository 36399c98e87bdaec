"""pipelines/real_pairs.py: held-out validation scenes for task.real_val."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from l2m.train.real_val import _pairs
from l2m_sfm import sample_scene

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pipelines"))
import real_pairs  # noqa: E402


def test_validation_scene_links_photos_and_model_and_lists_gap3_pairs(tmp_path):
    scene = sample_scene.main({"num_views": 5, "width": 96, "height": 72, "focal": 80.0, "supersample": 1},
                              tmp_path / "scene")
    val = real_pairs.validation_scene(scene / "images", scene / "gt", tmp_path / "val" / "toy")
    assert (val / "images").resolve() == (scene / "images").resolve()
    assert (val / "gt").resolve() == (scene / "gt").resolve()
    names = sorted(p.name for p in (scene / "images").iterdir())
    pairs = [tuple(ln.split()) for ln in (val / "pairs.txt").read_text().splitlines()]
    assert len(pairs) == 9 and (names[0], names[3]) in pairs and (names[0], names[4]) not in pairs
    assert _pairs(val, names, 100) == pairs  # what stage-2 validation reads
    real_pairs.validation_scene(scene / "images", scene / "gt", val)  # rerun replaces the links
    assert (val / "pairs.txt").read_text().count("\n") == 8


def test_unknown_hold_out_scene_is_refused(tmp_path):
    (tmp_path / "sfm_smoke" / "kermit" / "images").mkdir(parents=True)
    with pytest.raises(SystemExit):
        real_pairs.main(["--data", str(tmp_path), "--output", str(tmp_path / "out"), "--hold-out", "nope"])
    assert not (tmp_path / "out").exists()
