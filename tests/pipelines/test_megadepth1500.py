"""MegaDepth-1500: parsing of the real LoFTR index, clear errors without images, and the full loop
(match -> cache -> evaluate -> JSON -> plots) on a tiny synthetic data root in the MegaDepth layout."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from synthetic_bench import OracleMatcher, World, install_oracle, load_script, relative, write_megadepth

from l2m.data.benchmark_pairs import BenchmarkDataError, load_megadepth1500, load_pairs_with_gt

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("L2M_SHARED_DATA", REPO / ".." / "shared" / "data"))
META = SHARED / "benchmark_meta" / "megadepth1500"
STEMS = ["0022_0.1_0.3", "0015_0.1_0.3", "0015_0.3_0.5", "0022_0.3_0.5", "0022_0.5_0.7"]
md = load_script("megadepth1500")


@pytest.fixture(scope="module")
def real_pairs():
    if not (META / "megadepth_test_1500.txt").exists():
        pytest.skip(f"MegaDepth-1500 index not found in {META} (set L2M_SHARED_DATA)")
    return load_megadepth1500(META)


@pytest.mark.data
def test_real_index_has_1500_rigid_pairs_in_the_loftr_order(real_pairs):
    assert len(real_pairs) == 1500
    assert [p.info["scene_info"] for p in real_pairs[::300]] == STEMS
    bins = {"0.1_0.3": (0.1, 0.3), "0.3_0.5": (0.3, 0.5), "0.5_0.7": (0.5, 0.7)}
    for p in real_pairs:
        T = p.T_0to1
        R = T[:3, :3]
        assert np.allclose(T[3], [0, 0, 0, 1]) and abs(np.linalg.det(R) - 1) < 1e-6
        assert np.abs(R.T @ R - np.eye(3)).max() < 1e-6
        lo, hi = bins[p.info["scene_info"][5:]]
        assert lo <= p.info["overlap"] < hi
        assert p.name0.startswith(f"Undistorted_SfM/{p.info['scene_info'][:4]}/images/")
        assert p.K0.shape == (3, 3) and p.K0[0, 0] > 100 and p.K0[2, 2] == 1 and p.K_size0 is None
    scenes = {s: {n for p in real_pairs if p.info["scene_info"][:4] == s for n in (p.name0, p.name1)}
              for s in ("0015", "0022")}
    assert len(scenes["0015"]) <= 445 and len(scenes["0022"]) <= 553  # non-None entries of the npz files


@pytest.mark.data
def test_real_index_agrees_with_the_flat_pairs_with_gt_list(real_pairs):
    flat = load_pairs_with_gt(META / "megadepth1500_pairs_with_gt.txt")
    assert len(flat) == 1500
    assert all(a.name0 == b.name0 and a.name1 == b.name1 for a, b in zip(real_pairs, flat))
    assert max(np.abs(a.T_0to1 - b.T_0to1).max() for a, b in zip(real_pairs, flat)) < 1e-6
    assert max(np.abs(a.K1 - b.K1).max() for a, b in zip(real_pairs, flat)) < 1e-6


@pytest.mark.data
def test_dry_run_parses_without_images(real_pairs, tmp_path, capsys):
    rows, runs = md.main(["--meta", str(META), "--dry-run", "--output", str(tmp_path / "out"),
                          "--protocol", "roma"])
    out = capsys.readouterr().out
    assert rows == [] and "1500 pairs" in out and "trials 5" in out and "thr 0.5 px in the input frame" in out
    assert not (tmp_path / "out").exists()


@pytest.mark.data
def test_missing_images_name_the_file_and_the_readme(real_pairs, tmp_path):
    with pytest.raises(SystemExit) as e:
        md.main(["--meta", str(META), "--data-root", str(tmp_path), "--output", str(tmp_path / "o"),
                 "--limit", "2", "--matchers", "sift"])
    msg = str(e.value)
    assert "4 MegaDepth-1500 image(s) missing" in msg and "datasets/README.md" in msg
    assert str(tmp_path / real_pairs[0].name0) in msg


def test_missing_metadata_is_reported(tmp_path):
    with pytest.raises(SystemExit, match="megadepth_test_1500.txt"):
        md.main(["--data-root", str(tmp_path), "--output", str(tmp_path / "o"), "--dry-run"])
    (tmp_path / "megadepth_test_1500.txt").write_text("0015_0.1_0.3")
    with pytest.raises(BenchmarkDataError, match="0015_0.1_0.3.npz"):
        load_megadepth1500(tmp_path)


@pytest.fixture()
def fake_root(tmp_path, monkeypatch):
    world = World([(320, 240), (240, 320), (320, 213), (288, 216), (320, 240)], seed=3)
    stems = {"0015_0.1_0.3": [(0, 1), (1, 2), (2, 3)], "0015_0.3_0.5": [(3, 4), (0, 2)]}
    root, meta, index = write_megadepth(tmp_path / "md", world, stems)
    oracle = OracleMatcher(index, noise=0.0)
    install_oracle(monkeypatch, oracle)
    return root, meta, world, oracle


def test_full_loop_on_a_synthetic_megadepth_root(fake_root, tmp_path):
    root, meta, world, oracle = fake_root
    pairs = load_megadepth1500(meta)
    assert len(pairs) == 5 and np.allclose(pairs[0].T_0to1, relative(world, 0, 1))
    out = tmp_path / "out"
    rows, runs = md.main(["--data-root", str(root), "--output", str(out), "--matchers", "oracle",
                          "--protocol", "loftr", "--num-worst", "2"])
    assert oracle.calls == 5
    errors = [r["error"] for r in runs["oracle"]]
    assert max(errors) < 0.05, errors  # exact matches: only the frame conversions could add error
    summary = json.loads((out / "oracle" / "loftr" / "summary.json").read_text())
    assert summary["metrics"]["auc@5"] > 0.99 and summary["failures"] == 0 and summary["num_pairs"] == 5
    p = summary["protocol"]
    assert (p["name"], p["resize"], p["threshold"], p["threshold_frame"], p["estimator"], p["trials"],
            p["failure_error"]) == ("loftr", "long:840/8", 0.5, "original", "opencv", 1, "inf")
    assert summary["matcher_conf"] == {"noise": 0.0, "outliers": 0.0} and summary["seed"] == 0
    assert {"poselib", "opencv-python-headless", "git_commit"} <= set(summary["versions"])
    pairs_json = json.loads((out / "oracle" / "loftr" / "pairs.json").read_text())
    assert len(pairs_json["pairs"]) == 5 and pairs_json["pairs"][0]["num_matches"] > 50
    assert (out / "results_loftr.json").exists()
    for f in ("loftr_recall.png", "loftr_scatter.png", "worst/loftr/oracle_worst1.png",
              "worst/loftr/oracle_worst2.png"):
        assert (out / "plots" / f).stat().st_size > 1000
    cache = list((out / "predictions").glob("megadepth1500_oracle_long-840-8_*.h5"))
    assert len(cache) == 1

    # a different estimator on the same predictions never re-matches
    rows2, runs2 = md.main(["--data-root", str(root), "--output", str(out), "--matchers", "oracle", "--eval-only",
                            "--protocol", "poselib", "--protocol-conf", "resize=long:840/8", "--no-plots"])
    assert oracle.calls == 5 and rows2[0]["protocol"]["estimator"] == "poselib"
    assert rows2[0]["metrics"]["auc@5"] > 0.99


def test_roma_preset_runs_five_trials_in_the_resized_frame(fake_root, tmp_path):
    root, meta, world, oracle = fake_root
    oracle.noise, oracle.outliers = 0.5, 0.2
    rows, runs = md.main(["--data-root", str(root), "--output", str(tmp_path / "o"), "--matchers", "oracle",
                          "--protocol", "roma", "--limit", "3", "--no-plots"])
    s = rows[0]
    assert s["num_pairs"] == 3 and s["num_samples"] == 15 and s["protocol"]["failure_error"] == 90.0
    assert all(len(r["trials"]) == 5 for r in runs["oracle"])
    assert s["metrics"]["auc@20"] > 0.9
