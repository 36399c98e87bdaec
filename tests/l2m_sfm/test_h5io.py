import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from l2m_sfm import h5io


def test_pair_names():
    assert h5io.names_to_pair("a/b.jpg", "c.jpg") == "a-b.jpg/c.jpg"
    assert h5io.names_to_pair_old("a/b.jpg", "c.jpg") == "a-b.jpg_c.jpg"


def test_keypoints_round_trip_nested_name(tmp_path):
    path = tmp_path / "feats.h5"
    kp = np.array([[0.25, 1.5], [1535.75, 1023.5]], np.float32)  # float32: no float16 rounding at 1.5k px
    desc = np.random.default_rng(0).normal(size=(2, 64)).astype(np.float32)
    h5io.write_keypoints(path, "seq/a.jpg", kp, scores=[0.5, 0.9], descriptors=desc, image_size=(1536, 1024))
    h5io.write_keypoints(path, "b.jpg", kp[:1])
    assert np.array_equal(h5io.read_keypoints(path, "seq/a.jpg"), kp)
    feats = h5io.read_features(path, "seq/a.jpg")
    assert feats["descriptors"].shape == (2, 64) and feats["descriptors"].dtype == np.float16
    with h5py.File(path) as f:
        assert f["seq/a.jpg/descriptors"].shape == (64, 2)  # hloc stores (D, N)
    assert list(feats["image_size"]) == [1536, 1024]
    assert h5io.list_names(path) == ["b.jpg", "seq/a.jpg"]
    assert h5io.missing_names(path, ["b.jpg", "c.jpg", "d/e.jpg"]) == ["c.jpg", "d/e.jpg"]
    with pytest.raises(h5io.H5LookupError, match="2 image.*c.jpg, d/e.jpg"):
        h5io.require_names(path, ["b.jpg", "c.jpg", "d/e.jpg"])


def test_matches_round_trip_reversed_and_legacy(tmp_path):
    path = tmp_path / "m.h5"
    m0 = np.array([2, -1, 0, 1])
    h5io.write_matches(path, "x/a.jpg", "b.jpg", m0, [0.9, 0, 0.5, 0.7])
    with h5py.File(path) as f:
        assert f["x-a.jpg/b.jpg/matches0"].dtype == np.int16
    m, s = h5io.read_matches(path, "x/a.jpg", "b.jpg")
    assert m.tolist() == [[0, 2], [2, 0], [3, 1]] and np.allclose(s, [0.9, 0.5, 0.7], atol=1e-3)
    mr, sr = h5io.read_matches(path, "b.jpg", "x/a.jpg")  # stored the other way round -> flipped
    assert mr.tolist() == [[2, 0], [0, 2], [1, 3]] and np.allclose(sr, s)
    with h5py.File(path, "a") as f:  # a legacy hloc file: '_' separator, no completion marker
        g = f.create_group("c.jpg_d.jpg")
        g["matches0"] = np.array([1, -1], np.int16)
        g["matching_scores0"] = np.array([1.0, 0.0], np.float16)
    assert h5io.read_matches(path, "d.jpg", "c.jpg")[0].tolist() == [[1, 0]]
    assert sorted(h5io.list_pairs(path)) == ["c.jpg_d.jpg", "x-a.jpg/b.jpg"]
    with pytest.raises(h5io.H5LookupError, match=r"Pair \(a.jpg, zz.jpg\)"):
        h5io.read_matches(path, "a.jpg", "zz.jpg")
    assert not h5io.has_pair(path, "a.jpg", "zz.jpg") and h5io.has_pair(path, "b.jpg", "x/a.jpg")


def test_large_indices_do_not_overflow(tmp_path):
    m0 = np.array([40000, -1, 70000])
    h5io.write_matches(tmp_path / "m.h5", "a", "b", m0, [1, 0, 1])
    m, _ = h5io.read_matches(tmp_path / "m.h5", "a", "b")
    assert m.tolist() == [[0, 40000], [2, 70000]]


def test_raw_matches_round_trip(tmp_path):
    k0, k1 = np.random.rand(5, 2).astype(np.float32), np.random.rand(5, 2).astype(np.float32)
    h5io.write_raw_matches(tmp_path / "r.h5", "a", "b", k0, k1, np.arange(5))
    r0, r1, s = h5io.read_raw_matches(tmp_path / "r.h5", "b", "a")
    assert np.array_equal(r0, k1) and np.array_equal(r1, k0) and s.tolist() == [0, 1, 2, 3, 4]
    assert h5io.list_pairs(tmp_path / "r.h5", "keypoints0") == ["a/b"]


_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from l2m_sfm import h5io
    path = sys.argv[1]
    for i in range(1000):
        h5io.write_matches(path, f"img{i}", f"img{i+1}", np.arange(500) % 7 - 1, np.ones(500))
        print(i, flush=True)
        if i == 4:
            # stall in the middle of a pair: datasets written and flushed, completion marker not yet set
            with h5io._write_group(path, h5io.names_to_pair("img5", "img6")) as g:
                g.create_dataset("matches0", data=np.zeros(3, np.int16))
                g.file.flush()
                print("stalled", flush=True)
                time.sleep(60)
""")


def test_kill_9_leaves_finished_pairs_and_drops_half_written(tmp_path):
    path = tmp_path / "m.h5"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        for line in proc.stdout:
            if line.strip() == "stalled":
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not h5io.has_pair(path, "img5", "img6")  # half-written pair counts as absent
    assert sorted(h5io.list_pairs(path)) == [f"img{i}/img{i+1}" for i in range(5)]
    m, _ = h5io.read_matches(path, "img3", "img4")
    assert len(m) == 500 - 500 // 7 - (1 if 500 % 7 else 0)
    assert h5io.remove_incomplete(path) == ["img5/img6"]
    with h5py.File(path) as f:
        assert "img6" not in f["img5"]
    h5io.write_matches(path, "img5", "img6", np.array([0]), [1.0])  # append after the crash works
    assert h5io.has_pair(path, "img5", "img6")
