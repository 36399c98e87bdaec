"""Metric relative pose from matches + the reference depth (PnP), and its Map-free scores."""
from __future__ import annotations

import numpy as np
import pytest

from l2m_bench.metric_pose import estimate_metric_pose, lift, metric_pose_errors, summarize_metric
from l2m.evaluation.metrics import vcre


def _scene(seed: int = 0, noise: float = 0.0, outliers: float = 0.0):
    """Camera 0 looks at a slanted plane (depth map exact); camera 1 is 0.4 m to the side, rotated 8 deg.
    Returns kpts0, kpts1 (hloc pixels), K, depth0 (480x640), T_0to1."""
    rng = np.random.default_rng(seed)
    h, w = 480, 640
    K = np.array([[520.0, 0, 319.5], [0, 520.0, 239.5], [0, 0, 1]])  # hloc convention
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], np.ones_like(xs)], -1)
    n, d = np.array([0.1, -0.2, 1.0]), 3.0  # plane n·X = d
    depth0 = d / (rays @ n)
    a = np.radians(8)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    T[:3, 3] = [-0.4, 0.05, 0.1]
    k0 = rng.uniform([20, 20], [w - 20, h - 20], (500, 2))
    X0, _ = lift(k0, K, depth0)
    X1 = X0 @ T[:3, :3].T + T[:3, 3]
    k1 = X1[:, :2] / X1[:, 2:] * K[0, 0] + K[:2, 2]
    k1 += rng.normal(0, noise, k1.shape)
    bad = rng.random(len(k1)) < outliers
    k1[bad] = rng.uniform([0, 0], [w, h], (bad.sum(), 2))
    return k0, k1, K, depth0.astype(np.float32), T


def test_lift_recovers_the_plane_points():
    k0, _, K, depth0, _ = _scene()
    X, ok = lift(k0, K, depth0)
    assert ok.all() and np.allclose(X @ np.array([0.1, -0.2, 1.0]), 3.0, rtol=1e-4)


def test_exact_matches_give_the_metric_pose():
    k0, k1, K, depth0, T = _scene()
    est = estimate_metric_pose(k0, k1, K, K, depth0)
    err_t, err_R = metric_pose_errors(est.T_0to1, T)
    assert err_t < 1e-3 and err_R < 0.01 and est.num_inliers == 500
    assert vcre(est.T_0to1, T, K, 640, 480) < 0.1


def test_noise_and_outliers_stay_within_the_map_free_thresholds():
    """0.5 px noise and 30 % outliers: the pose is within 25 cm / 5 deg and VCRE well under 90 px."""
    k0, k1, K, depth0, T = _scene(seed=1, noise=0.5, outliers=0.3)
    est = estimate_metric_pose(k0, k1, K, K, depth0)
    err_t, err_R = metric_pose_errors(est.T_0to1, T)
    assert err_t < 0.05 and err_R < 0.5 and 300 < est.num_inliers < 400
    assert vcre(est.T_0to1, T, K, 640, 480) < 5


def test_too_few_matches_with_depth_is_a_failure():
    k0, k1, K, depth0, _ = _scene()
    depth0[:] = 0  # no depth anywhere
    assert estimate_metric_pose(k0, k1, K, K, depth0) is None
    assert estimate_metric_pose(k0[:0], k1[:0], K, K, depth0) is None


def test_summary_counts_failures_everywhere():
    recs = [{"success": True, "vcre": 10.0, "err_t_m": 0.1, "err_R_deg": 1.0, "num_inliers": 50},
            {"success": True, "vcre": 120.0, "err_t_m": 0.5, "err_R_deg": 2.0, "num_inliers": 20},
            {"success": False, "vcre": float("inf"), "err_t_m": float("inf"), "err_R_deg": float("inf"),
             "num_inliers": 0}]
    s = summarize_metric(recs)
    assert s["vcre_precision@90px"] == pytest.approx(1 / 3) and s["estimated"] == pytest.approx(2 / 3)
    assert s["median_vcre_px"] == 120.0 and s["median_err_t_m"] == 0.5
    assert s["pose_precision@25cm5deg"] == pytest.approx(1 / 3) and s["vcre_auc"] == pytest.approx(1 / 3)
