"""ScanNet-1500: the test.npz / intrinsics.npz parser on synthetic index files, and the full loop with 640x480
frames (LoFTR layout) and with larger frames (ScanNet layout, K of intrinsics.npz rescaled from 640x480)."""
import numpy as np
import pytest
from synthetic_bench import OracleMatcher, World, install_oracle, load_script, relative, write_scannet

from l2m.data.benchmark_pairs import BenchmarkDataError, load_scannet1500

sn = load_script("scannet1500")
K640 = {"scene0707_00": np.array([[577.6, 0, 318.9], [0, 578.7, 242.7], [0, 0, 1]]),
        "scene0708_01": np.array([[590.1, 0, 321.4], [0, 589.2, 236.0], [0, 0, 1]])}
PAIRS = {"scene0707_00": [(0, 1), (1, 2), (0, 2)], "scene0708_01": [(0, 1), (1, 3)]}


def make(tmp_path, scale: int = 1):
    """Index + frames; with scale 2 the frames are 1280x960 while intrinsics.npz stays at 640x480."""
    S = np.diag([scale, scale, 1.0])
    worlds = {s: World([(640 * scale, 480 * scale)] * 4, seed=k, K=S @ K640[s])
              for k, s in enumerate(K640)}
    index = write_scannet(tmp_path / "frames", tmp_path / "meta", worlds, PAIRS, K640)
    return worlds, index


def test_parser_reads_names_rel_pose_and_intrinsics(tmp_path):
    worlds, _ = make(tmp_path)
    pairs = load_scannet1500(tmp_path / "meta")
    assert [(p.name0, p.name1) for p in pairs[:2]] == [("scene0707_00/color/0.jpg", "scene0707_00/color/10.jpg"),
                                                       ("scene0707_00/color/10.jpg", "scene0707_00/color/20.jpg")]
    assert len(pairs) == 5 and pairs[3].name0 == "scene0708_01/color/0.jpg"
    assert np.allclose(pairs[4].T_0to1, relative(worlds["scene0708_01"], 1, 3), atol=1e-5)  # float32 rel_pose
    assert np.allclose(pairs[4].T_0to1[3], [0, 0, 0, 1])
    assert np.array_equal(pairs[3].K0, K640["scene0708_01"]) and pairs[0].K_size0 == (640, 480)
    assert pairs[0].info == {"scene": "scene0707_00", "frames": (0, 10)}


def test_parser_errors_name_the_file(tmp_path):
    with pytest.raises(BenchmarkDataError, match="intrinsics.npz"):
        load_scannet1500(tmp_path)
    make(tmp_path)
    np.savez(tmp_path / "meta" / "intrinsics.npz", scene0707_00=K640["scene0707_00"])
    with pytest.raises(BenchmarkDataError, match="no key scene0708_01"):
        load_scannet1500(tmp_path / "meta")
    np.savez(tmp_path / "meta" / "test.npz", name=np.zeros((3, 4), np.uint16))
    with pytest.raises(BenchmarkDataError, match="rel_pose"):
        load_scannet1500(tmp_path / "meta")


@pytest.mark.parametrize("scale", [1, 2])
def test_full_loop_with_exact_matches(tmp_path, monkeypatch, scale):
    worlds, index = make(tmp_path, scale)
    oracle = OracleMatcher(index)
    install_oracle(monkeypatch, oracle)
    if scale == 2:  # the ScanNet layout: scans_test/<scene>/sens/frame-%06d.color.jpg
        for p in list((tmp_path / "frames").glob("*/color/*.jpg")):
            dst = tmp_path / "frames" / "scans_test" / p.parts[-3] / "sens" / f"frame-{int(p.stem):06d}.color.jpg"
            dst.parent.mkdir(parents=True, exist_ok=True)
            p.rename(dst)
    rows, runs = sn.main(["--data-root", str(tmp_path / "frames"), "--meta", str(tmp_path / "meta"),
                          "--output", str(tmp_path / "out"), "--matchers", "oracle", "--protocol", "loftr",
                          "--no-plots"])
    assert oracle.calls == 5
    errors = [r["error"] for r in runs["oracle"]]
    assert max(errors) < 0.05, errors
    assert rows[0]["metrics"]["auc@5"] > 0.99 and rows[0]["protocol"]["resize"] == "fixed:640x480"


def test_missing_frames_are_reported(tmp_path):
    make(tmp_path)
    with pytest.raises(SystemExit, match="ScanNet-1500 image"):
        sn.main(["--data-root", str(tmp_path / "nowhere"), "--meta", str(tmp_path / "meta"),
                 "--output", str(tmp_path / "out"), "--matchers", "sift"])
