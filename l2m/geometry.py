"""Camera and pose geometry shared by the model, the data engine, training and evaluation.

Conventions: poses are world-to-camera 4x4 matrices (X_cam = R X_world + t, COLMAP); a relative pose
T_0to1 maps camera-0 coordinates to camera-1 coordinates. Pixel coordinates follow the hloc convention
(centre of the top-left pixel at (0, 0)) unless a function says otherwise.
"""
from __future__ import annotations

import numpy as np


def relative_pose(T0_cw: np.ndarray, T1_cw: np.ndarray) -> np.ndarray:
    """T_0to1 = T1_cw @ inv(T0_cw) for two 4x4 world-to-camera poses."""
    return T1_cw @ np.linalg.inv(T0_cw)


def rotation_error_deg(R_est: np.ndarray, R_gt: np.ndarray) -> float:
    """Angle of R_gt^T R_est in degrees."""
    cos = (np.trace(R_gt.T @ R_est) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def translation_angle_deg(t_est: np.ndarray, t_gt: np.ndarray, fold_sign: bool = True) -> float:
    """Angle between two translation directions in degrees; folded to [0, 90] when the sign is unknown."""
    n = np.linalg.norm(t_est) * np.linalg.norm(t_gt)
    if n < 1e-12:
        return float("inf")
    angle = float(np.degrees(np.arccos(np.clip(np.dot(t_est, t_gt) / n, -1.0, 1.0))))
    return min(angle, 180.0 - angle) if fold_sign else angle


def relative_pose_error(R_est: np.ndarray, t_est: np.ndarray, T_0to1_gt: np.ndarray,
                        fold_sign: bool = True) -> tuple[float, float]:
    """(rotation error, translation-direction error) in degrees of an estimated relative pose."""
    return (rotation_error_deg(R_est, T_0to1_gt[:3, :3]),
            translation_angle_deg(np.asarray(t_est).reshape(3), T_0to1_gt[:3, 3], fold_sign))


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics of an image resized by (sx, sy), with pixel-corner-aligned resizing (COLMAP style)."""
    S = np.diag([sx, sy, 1.0])
    return S @ K
