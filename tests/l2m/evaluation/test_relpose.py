"""Protocol presets, pixel frames and the three estimators on synthetic pairs with known poses."""
import dataclasses
import math

import cv2
import numpy as np
import pytest

from l2m.config import ConfigError
from l2m.evaluation.metrics import pose_auc
from l2m.evaluation.relpose import (DATASETS, ESTIMATORS, PRESETS, K_colmap_to_hloc, estimate_relative_pose,
                             evaluate_pose_trials, get_protocol, rescale_K, rescale_keypoints, resized_size,
                             select_matches, threshold_frame_size)


def synthetic_pair(seed: int, n: int = 300, noise: float = 0.3, outliers: float = 0.15, size=(640, 480)):
    """Random points seen by two cameras with a known relative pose; K in the hloc convention."""
    rng = np.random.default_rng(seed)
    w, h = size
    K = np.array([[0.9 * w, 0, w / 2 - 0.5], [0, 0.9 * w, h / 2 - 0.5], [0, 0, 1.0]])
    R, _ = cv2.Rodrigues(rng.normal(0, 0.12, 3))
    t = rng.normal(0, 1, 3)
    t[2] *= 0.3
    t = 0.8 * t / np.linalg.norm(t)
    X = np.concatenate([rng.uniform(-2, 2, (n, 2)), rng.uniform(5, 9, (n, 1))], 1)
    x0 = X @ K.T
    x1 = (X @ R.T + t) @ K.T
    k0 = x0[:, :2] / x0[:, 2:] + rng.normal(0, noise, (n, 2))
    k1 = x1[:, :2] / x1[:, 2:] + rng.normal(0, noise, (n, 2))
    m = int(outliers * n)
    k1[:m] = rng.uniform(0, [w, h], (m, 2))
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return k0, k1, K, K.copy(), T


def test_every_preset_exists_for_every_dataset_and_records_its_choices():
    for name in PRESETS:
        for dataset in DATASETS:
            p = get_protocol(name, dataset)
            d = p.to_dict()
            for key in ("resize", "estimator", "threshold", "threshold_frame", "confidence", "trials",
                        "failure_error", "min_matches", "max_matches", "shuffle"):
                assert key in d
    roma = get_protocol("roma", "megadepth1500")
    assert (roma.trials, roma.shuffle, roma.failure_error, roma.max_matches) == (5, True, 90.0, 5000)
    assert roma.threshold_frame == "input" and roma.resize == "long:1200"
    loftr = get_protocol("loftr", "megadepth1500")
    assert (loftr.resize, loftr.threshold, loftr.threshold_frame, loftr.confidence) == \
        ("long:840/8", 0.5, "original", 0.99999)
    assert math.isinf(loftr.failure_error) and loftr.to_dict()["failure_error"] == "inf"
    assert get_protocol("poselib", "scenes").estimator == "poselib"


def test_overrides_and_unknown_keys():
    p = get_protocol("loftr", "scenes", {"threshold": 1.0, "estimator": "pycolmap"})
    assert (p.threshold, p.estimator) == (1.0, "pycolmap")
    with pytest.raises(ConfigError, match="treshold"):
        get_protocol("loftr", "scenes", {"treshold": 1.0})
    with pytest.raises(ConfigError):
        get_protocol("nope", "scenes")
    with pytest.raises(ConfigError):
        get_protocol("loftr", "scenes", {"resize": "long840"})
    with pytest.raises(ConfigError):
        get_protocol("loftr", "scenes", {"estimator": "magic"})


def test_resize_rules():
    assert resized_size(1600, 1200, "long:840/8") == (840, 624)  # 630 floored to a multiple of 8
    assert resized_size(1600, 1200, "long:840") == (840, 630)
    assert resized_size(1200, 1600, "long:1200") == (900, 1200)
    assert resized_size(1296, 968, "short:480") == (643, 480)
    assert resized_size(1296, 968, "fixed:640x480") == (640, 480)
    assert resized_size(500, 400, "long:1000") == (1000, 800)  # long/short also upscale (as upstream)
    assert resized_size(500, 400, "none") == (500, 400)


def test_frames_are_consistent_for_keypoints_and_intrinsics():
    rng = np.random.default_rng(0)
    K = np.array([[800.0, 0, 639.5], [0, 810, 479.5], [0, 0, 1]])  # hloc convention, 1280x960
    X = np.concatenate([rng.uniform(-1, 1, (50, 2)), rng.uniform(3, 6, (50, 1))], 1)
    x = X @ K.T
    k = x[:, :2] / x[:, 2:]
    small = (333, 250)  # anisotropic on purpose
    Ks = rescale_K(K, (1280, 960), small)
    xs = X @ Ks.T
    assert np.abs(rescale_keypoints(k, (1280, 960), small) - xs[:, :2] / xs[:, 2:]).max() < 1e-9
    back = rescale_keypoints(rescale_keypoints(k, (1280, 960), small), small, (1280, 960))
    assert np.abs(back - k).max() < 1e-9
    # pixel centre (0,0) of a 2x downscale sits at (-0.25, -0.25) of the small image
    assert rescale_keypoints(np.zeros((1, 2)), (4, 4), (2, 2)) == pytest.approx(np.full((1, 2), -0.25))
    Kc = K_colmap_to_hloc(np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]))
    assert (Kc[0, 2], Kc[1, 2]) == (319.5, 239.5)


def test_threshold_frame_sizes():
    p = get_protocol("roma", "megadepth1500")
    assert threshold_frame_size(p, (1600, 1200), (1200, 900)) == (1200, 900)
    assert threshold_frame_size(dataclasses.replace(p, threshold_frame="original"), (1600, 1200), (1200, 900)) \
        == (1600, 1200)
    assert threshold_frame_size(dataclasses.replace(p, threshold_frame="long:800"), (1600, 1200), (1200, 900)) \
        == (800, 600)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimators_recover_a_known_pose(estimator):
    k0, k1, K0, K1, T = synthetic_pair(1)
    p = dataclasses.replace(get_protocol("loftr", "scenes"), estimator=estimator, threshold=1.0)
    R, t, inliers = estimate_relative_pose(k0, k1, K0, K1, p, np.random.default_rng(0))
    cos = np.clip((np.trace(T[:3, :3].T @ R) - 1) / 2, -1, 1)
    assert np.degrees(np.arccos(cos)) < 1.0  # true rotation ~7 deg: a transposed R would be off by ~14
    assert np.degrees(np.arccos(abs(t @ T[:3, 3]) / np.linalg.norm(T[:3, 3]))) < 3.0
    assert abs(np.linalg.norm(t) - 1) < 1e-9
    assert inliers[:45].mean() < 0.2 and inliers[45:].mean() > 0.9  # the first 15 % are outliers


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_on_a_small_synthetic_set(name):
    p = get_protocol(name, "scenes")
    errors, records = [], []
    for seed in range(8):
        k0, k1, K0, K1, T = synthetic_pair(seed)
        r = evaluate_pose_trials(k0, k1, K0, K1, T, p, np.random.default_rng(seed))
        assert len(r) == p.trials
        records += r
        errors += [x["error"] for x in r]
    assert all(x["success"] for x in records)
    assert max(errors) < 4.0, (name, errors)  # OpenCV without refinement: ~1 deg at 0.3 px noise
    auc = pose_auc(errors, (5, 10, 20))
    assert auc[0] > 0.7 and auc[2] > 0.92, (name, auc)


def test_failure_values_and_min_matches():
    k0, k1, K0, K1, T = synthetic_pair(0, n=4, outliers=0)
    loftr = get_protocol("loftr", "megadepth1500")
    roma = get_protocol("roma", "megadepth1500")
    assert estimate_relative_pose(k0, k1, K0, K1, loftr) is None
    r = evaluate_pose_trials(k0, k1, K0, K1, T, loftr, np.random.default_rng(0))
    assert len(r) == 1 and not r[0]["success"] and math.isinf(r[0]["error"])
    r = evaluate_pose_trials(k0, k1, K0, K1, T, roma, np.random.default_rng(0))
    assert len(r) == 5 and all(x["error"] == 90.0 and not x["success"] for x in r)  # 5, not 6 entries
    k0, k1, K0, K1, T = synthetic_pair(0, n=50, outliers=0)
    strict = dataclasses.replace(loftr, min_matches=100)
    assert evaluate_pose_trials(k0, k1, K0, K1, T, strict, np.random.default_rng(0))[0]["success"] is False


def test_roma_trials_reshuffle_and_are_reproducible():
    k0, k1, K0, K1, T = synthetic_pair(3, noise=0.8, outliers=0.3)
    p = get_protocol("roma", "scenes")
    a = [x["error"] for x in evaluate_pose_trials(k0, k1, K0, K1, T, p, np.random.default_rng(7))]
    b = [x["error"] for x in evaluate_pose_trials(k0, k1, K0, K1, T, p, np.random.default_rng(7))]
    assert a == b  # same seed, same numbers
    assert len(set(np.round(a, 9))) > 1  # reshuffling changes OpenCV's RANSAC samples
    fixed = dataclasses.replace(p, shuffle=False)
    c = [x["error"] for x in evaluate_pose_trials(k0, k1, K0, K1, T, fixed, np.random.default_rng(7))]
    assert len(set(np.round(c, 9))) == 1  # OpenCV RANSAC is deterministic in the input order


def test_threshold_scales_with_the_frame():
    # the same matches at half resolution with the threshold in that frame keep ~ the same inliers as
    # full resolution with the threshold doubled
    k0, k1, K0, K1, _ = synthetic_pair(5, noise=1.0, outliers=0.2, size=(1280, 960))
    p = dataclasses.replace(get_protocol("loftr", "scenes"), estimator="poselib", threshold=2.0)
    full = estimate_relative_pose(k0, k1, K0, K1, p)[2].sum()
    s = ((1280, 960), (640, 480))
    half = estimate_relative_pose(rescale_keypoints(k0, *s), rescale_keypoints(k1, *s), rescale_K(K0, *s),
                                  rescale_K(K1, *s), dataclasses.replace(p, threshold=1.0))[2].sum()
    assert abs(int(full) - int(half)) <= 3


def test_select_matches_keeps_the_best_scores():
    k = np.arange(20, dtype=float).reshape(10, 2)
    scores = np.array([0.1, 0.9, 0.5, 0.95, 0.2, 0.3, 0.8, 0.4, 0.6, 0.7])
    p = dataclasses.replace(get_protocol("roma", "scenes"), max_matches=3)
    a, b = select_matches(k, k + 1, scores, p)
    assert a[:, 0].tolist() == [2, 6, 12]  # indices 1, 3, 6 in stored order
    assert select_matches(k, k, scores, dataclasses.replace(p, max_matches=None))[0].shape == (10, 2)
