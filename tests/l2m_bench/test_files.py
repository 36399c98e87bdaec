"""The prediction cache: round trip, completeness marker, conf/identity-hash file names, meta checks; JSON
writing."""
import json
import math

import h5py
import numpy as np
import pytest

from l2m_bench.files import PredictionCache, package_versions, read_json, write_json
from l2m_sfm.h5io import read_raw_matches


def _write(cache, n0="a/x.jpg", n1="b/y.jpg", n=5):
    k = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    cache.write(n0, n1, k, k + 1, np.linspace(0, 1, n), (64, 48), (48, 64), (128, 96), (96, 128), 0.25)
    return k


def test_round_trip_sizes_and_hloc_layout(tmp_path):
    cache = PredictionCache.for_matcher(tmp_path, "megadepth1500", "sift", {"max_keypoints": 100}, "long:840/8")
    assert cache.missing([("a/x.jpg", "b/y.jpg")]) == [("a/x.jpg", "b/y.jpg")]
    k = _write(cache)
    assert cache.has("a/x.jpg", "b/y.jpg") and cache.missing([("a/x.jpg", "b/y.jpg")]) == []
    c = cache.read("a/x.jpg", "b/y.jpg")
    assert np.array_equal(c.keypoints0, k) and np.array_equal(c.keypoints1, k + 1)
    assert (c.input_size0, c.input_size1, c.original_size0, c.original_size1) == ((64, 48), (48, 64), (128, 96),
                                                                                  (96, 128))
    assert c.seconds == 0.25
    k0, k1, s = read_raw_matches(cache.path, "a/x.jpg", "b/y.jpg")  # readable as hloc raw matches
    assert np.array_equal(k1, k + 1) and len(s) == 5
    meta = cache.file_meta()
    assert meta["matcher"] == "sift" and json.loads(meta["matcher_conf"]) == {"max_keypoints": 100}
    assert meta["resize"] == "long:840/8" and "poselib" in json.loads(meta["versions"])


def test_file_name_depends_on_conf_and_resize(tmp_path):
    a = PredictionCache.for_matcher(tmp_path, "scenes", "sift", {}, "long:1024")
    b = PredictionCache.for_matcher(tmp_path, "scenes", "sift", {"max_keypoints": 10}, "long:1024")
    c = PredictionCache.for_matcher(tmp_path, "scenes", "sift", {}, "long:840")
    assert len({a.path, b.path, c.path}) == 3
    assert a.path == PredictionCache.for_matcher(tmp_path, "scenes", "sift", {}, "long:1024").path


def test_file_name_and_meta_follow_matcher_identity(tmp_path):
    old = {"variant": "l2m-tiny", "weights": {"name": "l2m_tiny.pt", "sha1": "a" * 40}}
    new = {"variant": "l2m-tiny", "weights": {"name": "l2m_tiny.pt", "sha1": "b" * 40}}  # retrained, same name
    a = PredictionCache.for_matcher(tmp_path, "scenes", "l2m-tiny", {}, "long:1024", old)
    b = PredictionCache.for_matcher(tmp_path, "scenes", "l2m-tiny", {}, "long:1024", new)
    assert a.path != b.path
    _write(a)
    assert json.loads(a.file_meta()["matcher_identity"]) == old
    with pytest.raises(ValueError, match="matcher_identity="):
        PredictionCache(a.path, "scenes", "l2m-tiny", {}, "long:1024", new)
    # an empty identity (sparse baselines) keeps the earlier file name
    assert (PredictionCache.for_matcher(tmp_path, "scenes", "sift", {}, "none", {}).path
            == PredictionCache.for_matcher(tmp_path, "scenes", "sift", {}, "none").path)


def test_incomplete_group_counts_as_missing_and_meta_mismatch_raises(tmp_path):
    cache = PredictionCache.for_matcher(tmp_path, "scenes", "sift", {}, "none")
    _write(cache)
    with h5py.File(cache.path, "a") as f:
        f["a-x.jpg/b-y.jpg"].attrs["complete"] = False  # as left by a killed run
    assert not cache.has("a/x.jpg", "b/y.jpg")
    with pytest.raises(KeyError, match="not in"):
        cache.read("a/x.jpg", "b/y.jpg")
    _write(cache)  # rewriting replaces the broken group
    assert cache.has("a/x.jpg", "b/y.jpg")
    with pytest.raises(ValueError, match="matcher="):
        PredictionCache(cache.path, "scenes", "other", {}, "none")


def test_write_json_is_atomic_and_encodes_inf(tmp_path):
    path = write_json({"e": [1.0, math.inf, np.float32(2.5)], "n": np.int64(3)}, tmp_path / "x" / "r.json")
    assert read_json(path) == {"e": [1.0, "inf", 2.5], "n": 3}
    assert not list(tmp_path.glob("x/*.tmp"))
    v = package_versions()
    assert {"numpy", "poselib", "pycolmap", "opencv-python-headless", "git_commit"} <= set(v)
