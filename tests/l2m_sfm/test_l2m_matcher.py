import hashlib

import numpy as np
import pytest
import torch

from l2m.config import ConfigError
from l2m_sfm.matchers import PairMatcher, get_matcher

torch.set_num_threads(1)


def _images():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (60, 90, 3)).astype(np.uint8)
    return a, np.ascontiguousarray(a[:, ::-1]), rng.integers(0, 255, (50, 70, 3)).astype(np.uint8)


def test_l2m_tiny_pair_matcher_outputs_original_pixels():
    m = get_matcher("l2m-tiny", {"weights": "random", "coarse_res": 64, "upsample_res": 0, "num_samples": 300})
    assert isinstance(m, PairMatcher) and m.dense and m.name == "l2m-tiny"
    a, _, c = _images()
    pm = m.match_pair(a, c, "a.jpg", "c.jpg")
    assert 0 < len(pm) <= 300 and pm.keypoints0.dtype == np.float32 and pm.scores.shape == (len(pm),)
    assert pm.keypoints0.min() >= -0.5 and pm.keypoints0[:, 0].max() <= 89.5 and pm.keypoints0[:, 1].max() <= 59.5
    assert pm.keypoints1[:, 0].max() <= 69.5 and pm.keypoints1[:, 1].max() <= 49.5
    # hloc convention x_pix = W/2 (x+1) - 0.5: each symmetric sample has one side on the 64-cell grid
    on_grid = lambda k, w: np.abs((k + 0.5) * 64 / w - 0.5 - np.round((k + 0.5) * 64 / w - 0.5)) < 1e-3  # noqa
    a_grid, c_grid = on_grid(pm.keypoints0[:, 0], 90), on_grid(pm.keypoints1[:, 0], 70)
    assert np.all(a_grid | c_grid) and a_grid.any() and c_grid.any()


def test_feature_cache_reuses_images_by_name():
    m = get_matcher("l2m-tiny", {"weights": "random", "coarse_res": 64, "upsample_res": 0, "num_samples": 100,
                                   "cache_size": 4})
    a, b, c = _images()
    first = m.match_pair(a, b, "a", "b")
    m.match_pair(a, c, "a", "c")
    assert m.model.cache.hits == 1 and m.model.cache.misses == 3
    again = m.match_pair(a, b, "a", "b")
    assert np.array_equal(first.keypoints0, again.keypoints0)


def test_unknown_conf_key_is_an_error():
    with pytest.raises(ConfigError, match="colour"):
        get_matcher("l2m-tiny", {"weights": "random", "colour": 1})


def _weight_files(tmp_path):
    from l2m.models.zoo import build_model, save_matcher_weights

    model = build_model("l2m-tiny", weights="random", pretrained_backbone=False)
    return model, save_matcher_weights(model, tmp_path / "a" / "l2m_tiny.pt"), \
        save_matcher_weights(model, tmp_path / "b" / "l2m_tiny.pt")


def test_identity_follows_weight_content_not_path(tmp_path):
    from l2m.models.zoo import save_matcher_weights
    from l2m_sfm import l2m_matcher

    model, a, b = _weight_files(tmp_path)
    ida = l2m_matcher.identity("l2m-tiny", {"weights": str(a)})
    assert ida["weights"] == {"name": "l2m_tiny.pt", "sha1": hashlib.sha1(a.read_bytes()).hexdigest()}
    assert ida["variant"] == "l2m-tiny" and ida["coarse_weights"] is None and ida["seed"] == 0
    assert l2m_matcher.identity("l2m-tiny", {"weights": str(b)}) == ida  # same content elsewhere
    hashed = len(l2m_matcher._SHA1)
    l2m_matcher.identity("l2m-tiny", {"weights": str(a)})
    assert len(l2m_matcher._SHA1) == hashed  # memoised per (path, inode, size, mtime)
    with torch.no_grad():
        next(model.decoder.parameters()).add_(1.0)
    save_matcher_weights(model, b)  # retrained, same file name
    idb = l2m_matcher.identity("l2m-tiny", {"weights": str(b)})
    assert idb["weights"]["sha1"] != ida["weights"]["sha1"] and idb["model_conf"] == ida["model_conf"]
    assert l2m_matcher.identity("l2m-tiny", {"weights": "random"})["weights"] == "random"


def test_identity_is_the_effective_model_conf(tmp_path, monkeypatch):
    from l2m.models.checkpoint import CACHE_ENV, MissingCheckpointError
    from l2m.models.zoo import VARIANTS
    from l2m_sfm.l2m_matcher import identity

    _, a, _ = _weight_files(tmp_path)
    base = identity("l2m-tiny", {"weights": str(a)})
    assert base["model_conf"] == VARIANTS["l2m-tiny"].conf
    assert identity("l2m-tiny", {"weights": str(a), "num_samples": VARIANTS["l2m-tiny"].conf["num_samples"]}) == base
    assert identity("l2m-tiny", {"weights": str(a), "cache_size": 2, "pair_batch": 3}) == base  # speed only
    off = identity("l2m-tiny", {"weights": str(a), "upsample_res": 0, "cycle_px": 0})
    assert off["model_conf"]["upsample_res"] is None and off["model_conf"]["cycle_px"] is None
    assert identity("l2m-tiny", {"weights": str(a), "seed": 1}) != base
    # the matcher runs with exactly that conf (one mapping of user keys for both)
    m = get_matcher("l2m-tiny", {"weights": str(a), "upsample_res": 0, "cycle_px": 0, "coarse_res": 64})
    ident = identity("l2m-tiny", {"weights": str(a), "upsample_res": 0, "cycle_px": 0, "coarse_res": 64})
    assert {k: m.model.conf[k] for k in ident["model_conf"]} == ident["model_conf"]
    monkeypatch.setitem(VARIANTS["l2m-tiny"].conf, "coarse_res", 512)  # a changed variant default
    assert identity("l2m-tiny", {"weights": str(a)})["model_conf"]["coarse_res"] == 512
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "home"))
    with pytest.raises(MissingCheckpointError, match="nope.pt"):
        identity("l2m-tiny", {"weights": "nope.pt"})


def test_fast_preset_has_its_own_identity_and_user_keys_still_win():
    from l2m_sfm.l2m_matcher import identity

    fast, tiny = identity("l2m-tiny-fast", {}), identity("l2m-tiny", {})
    assert fast["weights"] == tiny["weights"] and fast["model_conf"] != tiny["model_conf"]
    assert tuple(fast["model_conf"]["upsample_levels"]) == (4, 2, 1)
    same = identity("l2m-tiny-fast", {"upsample_res": 640, "upsample_levels": [8, 4, 2, 1]})
    assert same["model_conf"]["upsample_res"] == 640 and same["model_conf"]["upsample_levels"] == [8, 4, 2, 1]


def _fountain_pose_errors(matcher_name: str, pairs: list[tuple[str, str]]) -> list[float]:
    """max(rotation, translation-direction) error in degrees of the relative pose from the matcher's matches
    (essential matrix with the GT cameras, 2 px RANSAC) on Strecha fountain-P11 pairs."""
    import pycolmap

    from l2m.geometry import relative_pose, relative_pose_error
    from l2m.images import read_image
    from tests.l2m_sfm.test_baselines import DATA

    scene = DATA / "strecha" / "fountain-P11"
    if not (scene / "gt").is_dir():
        pytest.skip(f"strecha data not found under {DATA} (set L2M_SHARED_DATA)")
    torch.set_num_threads(2)
    rec = pycolmap.Reconstruction(str(scene / "gt"))
    images = {im.name: im for im in rec.images.values()}
    matcher = get_matcher(matcher_name, {}, "cpu")  # the bundled weights
    errors = []
    for a, b in pairs:
        pm = matcher.match_pair(read_image(scene / "images" / a), read_image(scene / "images" / b), a, b)
        i0, i1 = images[a], images[b]
        est = pycolmap.estimate_essential_matrix(pm.keypoints0.astype(np.float64) + 0.5,
                                                 pm.keypoints1.astype(np.float64) + 0.5, rec.cameras[i0.camera_id],
                                                 rec.cameras[i1.camera_id], pycolmap.RANSACOptions(max_error=2.0))
        T0, T1 = np.eye(4), np.eye(4)
        T0[:3], T1[:3] = i0.cam_from_world().matrix(), i1.cam_from_world().matrix()
        T = est["cam2_from_cam1"].matrix()
        errors.append(max(relative_pose_error(T[:, :3], T[:, 3], relative_pose(T0, T1))))
    return errors


@pytest.mark.data
def test_l2m_tiny_fast_on_a_real_pair():
    """Measured: pose error 0.26 deg, AUC@5 0.95 (the same pair with SIFT: see test_baselines)."""
    from l2m.evaluation.metrics import pose_auc

    errors = _fountain_pose_errors("l2m-tiny-fast", [("0000.jpg", "0001.jpg")])
    assert pose_auc(errors, (5,))[0] > 0.8, errors


@pytest.mark.data
@pytest.mark.slow
def test_l2m_tiny_auc_on_real_pairs():
    """Four fountain-P11 pairs, full l2m-tiny. Measured: errors 0.40, 0.14, 0.08, 0.40 deg, AUC@5/10/20 =
    0.96/0.98/0.99."""
    from l2m.evaluation.metrics import pose_auc

    errors = _fountain_pose_errors("l2m-tiny", [("0000.jpg", "0001.jpg"), ("0003.jpg", "0004.jpg"),
                                                ("0006.jpg", "0007.jpg"), ("0009.jpg", "0010.jpg")])
    auc5, auc10, _ = pose_auc(errors)
    assert auc5 > 0.85 and auc10 > 0.9, errors


def _check_anchor(m, a, b):
    rng = np.random.default_rng(1)
    k0 = rng.uniform(0, [89, 59], (40, 2)).astype(np.float32)
    k1 = rng.uniform(0, [69, 49], (30, 2)).astype(np.float32)
    agree = (np.arange(10), np.arange(10))
    out = m.anchor(a, b, k0, k1, "a", "b", radius_px=3.0, min_certainty=0.0, agree=agree)
    mt = out["matches"]
    assert mt.shape[1] == 2 and len(out["scores"]) == len(mt)
    assert np.all((mt[:, 0] >= 0) & (mt[:, 0] < 40) & (mt[:, 1] >= 0) & (mt[:, 1] < 30))
    assert len(set(mt[:, 0].tolist())) == len(mt) and len(set(mt[:, 1].tolist())) == len(mt)
    assert 0.0 <= out["certain_area"] <= 1.0 and 0 <= out["agreement"] <= 10


def test_anchor_gives_mutual_keypoint_index_pairs(tmp_path):
    m = get_matcher("l2m-tiny", {"weights": "random", "coarse_res": 64, "upsample_res": 0,
                                 "warp_cache": str(tmp_path / "warps.h5")})
    a, _, c = _images()
    _check_anchor(m, a, c)
    first = m.dense(a, c, "a", "c")
    again = m.dense(a, c, "a", "c")  # from the warp cache: identical
    assert torch.equal(first.warp, again.warp) and torch.equal(first.certainty, again.certainty)


@pytest.mark.slow
@pytest.mark.parametrize("name,conf", [("l2m-tiny-fast", {"upsample_res": 0, "coarse_res": 64}),
                                       ("l2m-vitb", {"coarse_res": 56, "upsample_res": 0}),
                                       ("l2m++", {"coarse_res": 56, "upsample_res": 0})])
def test_anchor_works_for_every_dense_matcher(name, conf):
    m = get_matcher(name, {"weights": "random", **conf})
    a, _, c = _images()
    _check_anchor(m, a, c)
