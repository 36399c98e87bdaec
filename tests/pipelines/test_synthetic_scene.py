"""Data-engine pairs as a benchmark scene: exact GT poses and depth survive the conversion."""
import json
import shutil
from pathlib import Path

import numpy as np
from synthetic_bench import load_script

from l2m.data.benchmark_pairs import load_scene
from l2m_sfm.sample_scene import load_depth

REPO = Path(__file__).resolve().parents[2]


def test_generated_pairs_become_a_scene_with_their_exact_geometry(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(REPO / "datasets" / "samples" / "toybox" / "images" / "view_00.jpg", photos / "a.jpg")
    gen = load_script("generate_data")
    data = gen.main({"size": 128}, photos, tmp_path / "engine", views_per_image=2, progress=False)
    scene = load_script("synthetic_scene").convert(data, tmp_path / "scene" / "synth")
    samples = (data / "samples.txt").read_text().split()
    pairs = load_scene(scene)
    assert [(p.name0, p.name1) for p in pairs] == [(f"{s}_A.png", f"{s}_B.png") for s in samples]
    for s, p in zip(samples, pairs):
        meta = json.loads((data / s / "meta.json").read_text())
        assert np.allclose(p.T_0to1, meta["T_AtoB"], atol=1e-9)
        assert np.allclose(p.K0, meta["K_A"]) and np.allclose(p.K1, meta["K_B"])
        with np.load(data / s / "geometry.npz") as geo:
            assert np.array_equal(load_depth(scene / "depth" / f"{s}_A.npz"), geo["depth_A"])
