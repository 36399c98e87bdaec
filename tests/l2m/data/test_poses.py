import numpy as np

from l2m.data.poses import default_pose_conf, inside_fraction, sample_covisible_pose, sample_relative_pose


def axis_angle(R):
    th = np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / (2 * np.sin(th))
    return w * th


def test_sampled_poses_respect_the_configured_ranges():
    rng = np.random.default_rng(0)
    for conf in ({}, {"translation_range": [0.1, 0.2, 0.3], "rotation_range_deg": [4, 6, 8], "orbit": False}):
        full = dict(default_pose_conf, **conf)
        rt, rr = np.array(full["translation_range"]), np.radians(full["rotation_range_deg"])
        ts, ws = [], []
        for _ in range(500):
            T, p = sample_relative_pose(rng, conf)
            assert np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12) and np.allclose(T[3], [0, 0, 0, 1])
            ts.append(T[:3, 3])
            ws.append(axis_angle(T[:3, :3]))
            assert np.allclose(np.radians(p["axis_angle_deg"]), ws[-1], atol=1e-9)
        t, w = np.abs(ts), np.abs(ws)
        assert (t >= 0.5 * rt - 1e-12).all() and (t < rt).all()
        assert (w >= 0.5 * rr - 1e-9).all() and (w < rr + 1e-9).all()
        assert (np.array(ts) > 0).mean(0).min() > 0.4  # both signs occur on every axis


def test_orbit_turns_back_towards_the_scene_and_min_covisible_resamples():
    rng = np.random.default_rng(1)
    for _ in range(50):
        T, _ = sample_relative_pose(rng, {"orbit": True})
        # centre point at depth 3: with orbit, the rotation moves it against the translation
        c = T[:3, :3] @ np.array([0, 0, 3.0])
        assert np.sign(c[0]) != np.sign(T[0, 3]) or abs(c[0]) < 1e-12
    pts = np.stack(np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9), [1.2]), -1).reshape(-1, 3)
    K = np.array([[60.0, 0, 64], [0, 60, 64], [0, 0, 1]])
    T, p = sample_covisible_pose(np.random.default_rng(2), pts, K, 128, 128, {"min_covisible": 0.9, "max_tries": 50})
    assert p["inside_fraction"] >= 0.9 and inside_fraction(pts, T, K, 128, 128) == p["inside_fraction"]
