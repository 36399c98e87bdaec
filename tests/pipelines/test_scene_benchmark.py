"""Scene benchmark: pairs.txt or the generated pair rule, exact-match loop on a synthetic COLMAP scene, a real
Strecha scene with a baseline matcher, and the SfM mode on the project's rendered sample scene."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from synthetic_bench import OracleMatcher, World, install_oracle, load_script, write_colmap_scene

from l2m.data.benchmark_pairs import BenchmarkDataError, default_scene_pairs, load_scene

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("L2M_SHARED_DATA", REPO / ".." / "shared" / "data"))
STRECHA = SHARED / "strecha"
sb = load_script("scene_benchmark")


def test_default_pair_rule():
    names = [f"{i}.jpg" for i in (3, 0, 4, 1, 2)]
    pairs = default_scene_pairs(names)
    assert len(pairs) == 4 + 3 + 2 + 1 - 1  # 5 images: all i<j except (0, 4)
    assert ("0.jpg", "3.jpg") in pairs and ("0.jpg", "4.jpg") not in pairs


@pytest.fixture()
def synthetic_scenes(tmp_path, monkeypatch):
    worlds = [World([(320, 240)] * 5, seed=1), World([(240, 320), (320, 240), (300, 200)], seed=2)]
    index = {}
    index.update(write_colmap_scene(tmp_path / "scenes" / "alpha", worlds[0], [f"a{i}.jpg" for i in range(5)]))
    index.update(write_colmap_scene(tmp_path / "scenes" / "beta", worlds[1], ["x.jpg", "y.jpg", "z.jpg"]))
    (tmp_path / "scenes" / "beta" / "pairs.txt").write_text("# two pairs\nx.jpg y.jpg\n\ny.jpg z.jpg\n")
    oracle = OracleMatcher(index)
    install_oracle(monkeypatch, oracle)
    return tmp_path / "scenes", oracle


def test_scene_loader_uses_pairs_txt_or_the_rule(synthetic_scenes):
    root, _ = synthetic_scenes
    alpha, beta = load_scene(root / "alpha"), load_scene(root / "beta")
    assert len(alpha) == 9 and alpha[0].info["pair_file"].startswith("generated")
    assert [(p.name0, p.name1) for p in beta] == [("x.jpg", "y.jpg"), ("y.jpg", "z.jpg")]
    assert beta[0].K_size0 == (240, 320) and beta[0].K_size1 == (320, 240)


def test_exact_matches_give_near_zero_error_on_every_scene(synthetic_scenes, tmp_path, capsys):
    root, oracle = synthetic_scenes
    out = tmp_path / "out"
    rows, runs = sb.main(["--scenes", str(root), "--matchers", "oracle", "--output", str(out), "--num-worst", "1"])
    assert oracle.calls == 11
    assert max(r["error"] for r in runs["oracle"]) < 0.05
    s = rows[0]
    assert s["protocol"]["name"] == "poselib" and s["protocol"]["threshold_frame"] == "original"
    assert s["protocol"]["resize"] == "long:1024" and s["metrics"]["auc@5"] > 0.99
    per_scene = json.loads((out / "results_poselib_per_scene.json").read_text())["per_scene"]
    assert {(r["scene"], r["pairs"]) for r in per_scene} == {("alpha", 9), ("beta", 2)}
    assert "alpha" in capsys.readouterr().out
    assert (out / "plots" / "poselib_recall.png").exists()
    assert (out / "plots" / "worst" / "poselib" / "oracle_worst1.png").exists()


def test_bad_scene_folders_are_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="neither a scene"):
        sb.main(["--scenes", str(tmp_path / "empty"), "--output", str(tmp_path / "o")])
    with pytest.raises(BenchmarkDataError, match="gt"):
        load_scene(tmp_path / "empty")


@pytest.mark.slow
@pytest.mark.data
def test_strecha_scene_with_a_baseline_matcher(tmp_path):
    scene = STRECHA / "Herz-Jesus-P8"
    if not (scene / "gt").is_dir():
        pytest.skip(f"{scene} not found (set L2M_SHARED_DATA)")
    out = tmp_path / "out"
    rows, runs = sb.main(["--scenes", str(scene), "--matchers", "sift", "--output", str(out), "--limit", "3",
                          "--protocol-conf", "resize=long:640", "--no-plots"])
    s = rows[0]
    assert s["num_pairs"] == 3 and s["failures"] == 0 and s["median_matches"] > 200
    assert s["metrics"]["auc@5"] > 0.8, s["metrics"]  # the README reference: 96.4 at long side 1024
    assert max(r["error"] for r in runs["sift"]) < 3.0


@pytest.mark.slow
def test_sfm_mode_on_the_rendered_sample_scene(tmp_path):
    from l2m_sfm import sample_scene

    sample_scene.main({"num_views": 4, "width": 320, "height": 240}, tmp_path / "toy")
    rows = sb.main(["--mode", "sfm", "--scenes", str(tmp_path / "toy"), "--matchers", "sift",
                    "--output", str(tmp_path / "out")])[0]
    r = rows[0]
    assert r["error"] is None and r["num_registered"] == 4
    assert r["auc"]["@5"] > 0.8 and r["median_rotation_error_deg"] < 1.0
    saved = json.loads((tmp_path / "out" / "results_sfm.json").read_text())
    assert saved["results"][0]["matcher"] == "sift" and "versions" in saved
    assert np.isfinite(r["median_center_error"])
    page = (tmp_path / "out" / "results.html").read_text()
    assert 'href="sfm/toy/sift/report.html"' in page
    report = (tmp_path / "out" / "sfm" / "toy" / "sift" / "report.html").read_text()
    assert report.split('id="evaluation-table">')[1].split("</table>")[0].count("<tr>") == 5  # header + 4 views
