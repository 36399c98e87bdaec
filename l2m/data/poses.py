"""Relative-pose sampling for synthetic novel views (spec §8.5).

Each of the six parameters gets a random sign and a magnitude ~ U[lower_fraction * r, r): translation ranges
r = (0.4, 0.4, 0.8) scene units (the nearest scene depth is about 1 after the spec normalisation), rotation an
axis-angle vector with r = 10 degrees per component, converted by Rodrigues. T_1to2 = [R | t], X2 = R X1 + t.

`orbit=True` (default) couples the signs of the yaw/pitch rotations to the x/y translations so that the camera
turns back towards the scene it moved away from (magnitudes, hence the configured ranges, are unchanged);
with `orbit=False` all six signs are independent, exactly as upstream.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from l2m.config import merge_conf

default_pose_conf: dict[str, Any] = {
    "translation_range": [0.4, 0.4, 0.8],  # r per axis, scene units
    "rotation_range_deg": [10.0, 10.0, 10.0],  # r per axis-angle component (pi/18)
    "lower_fraction": 0.5,  # magnitude ~ U[lower_fraction * r, r)
    "orbit": True,
    "min_covisible": 0.3,  # fraction of source pixels that must land inside the new view (0 disables)
    "max_tries": 10,
}


def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """3x3 rotation of an axis-angle vector (radians)."""
    v = np.asarray(axis_angle, np.float64)
    th = float(np.linalg.norm(v))
    if th < 1e-12:
        return np.eye(3)
    k = v / th
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(th) * Kx + (1 - math.cos(th)) * Kx @ Kx


def sample_relative_pose(rng: np.random.Generator, conf: dict | None = None) -> tuple[np.ndarray, dict]:
    """One T_1to2 (4x4 float64) and its parameters {"t": [3], "axis_angle_deg": [3]} per the configured ranges."""
    conf = merge_conf(default_pose_conf, conf, "pose")
    lo = float(conf["lower_fraction"])
    rt = np.asarray(conf["translation_range"], np.float64)
    rr = np.radians(np.asarray(conf["rotation_range_deg"], np.float64))
    t = rng.uniform(lo, 1.0, 3) * rt * rng.choice([-1.0, 1.0], 3)
    w = rng.uniform(lo, 1.0, 3) * rr * rng.choice([-1.0, 1.0], 3)
    if conf["orbit"]:
        # x' = cos(a) x + sin(a) z under a yaw a: a > 0 shifts the scene right, as t_x > 0 does; undo it.
        w[1] = -abs(w[1]) * np.sign(t[0])
        # y' = cos(a) y - sin(a) z under a pitch a: a > 0 shifts the scene up, t_y > 0 shifts it down.
        w[0] = abs(w[0]) * np.sign(t[1])
    T = np.eye(4)
    T[:3, :3] = rodrigues(w)
    T[:3, 3] = t
    return T, {"t": t.tolist(), "axis_angle_deg": np.degrees(w).tolist()}


def inside_fraction(points: np.ndarray, T_1to2: np.ndarray, K2: np.ndarray, height: int, width: int,
                    near: float = 0.01) -> float:
    """Fraction of camera-1 points (N, 3) in front of camera 2 and projecting inside its (height, width) image."""
    P = points @ T_1to2[:3, :3].T + T_1to2[:3, 3]
    z = P[:, 2]
    zs = np.where(z > near, z, 1.0)
    x = K2[0, 0] * P[:, 0] / zs + K2[0, 2]
    y = K2[1, 1] * P[:, 1] / zs + K2[1, 2]
    ok = (z > near) & (x >= 0) & (x <= width) & (y >= 0) & (y <= height)
    return float(ok.mean()) if len(ok) else 0.0


def sample_covisible_pose(rng: np.random.Generator, points: np.ndarray, K2: np.ndarray, height: int, width: int,
                          conf: dict | None = None) -> tuple[np.ndarray, dict]:
    """Sample poses until `min_covisible` of `points` (N, 3, camera 1) land in view 2; keeps the best of max_tries.

    The returned parameters gain "inside_fraction" and "tries".
    """
    conf = merge_conf(default_pose_conf, conf, "pose")
    best = None
    for k in range(max(1, int(conf["max_tries"]))):
        T, params = sample_relative_pose(rng, conf)
        frac = inside_fraction(points, T, K2, height, width)
        if best is None or frac > best[2]:
            best = (T, params, frac)
        if frac >= float(conf["min_covisible"]):
            break
    T, params, frac = best
    params.update(inside_fraction=frac, tries=k + 1)
    return T, params
