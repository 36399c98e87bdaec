"""Pose accuracy metrics: the "SuperGlue AUC" used by LoFTR, RoMa, glue-factory and GIM, and the Map-free
relocalisation metrics (VCRE, precision at 90 px, AUC of the confidence-ranked precision-recall curve).

The formula is the one written down in ../shared/spec/benchmark_protocol.md section 2.2: failures stay in
the denominator with infinite error, the recall polyline starts at (0, 0), errors equal to the threshold
do not count.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def pose_auc(errors: Iterable[float], thresholds: Sequence[float] = (5, 10, 20)) -> list[float]:
    """Area under the recall-vs-error curve up to each threshold, divided by it (values in [0, 1])."""
    errors = np.sort(np.asarray(list(errors), dtype=np.float64))
    if errors.size == 0:
        return [0.0 for _ in thresholds]
    errors = np.nan_to_num(errors, nan=np.inf)
    recall = np.arange(1, len(errors) + 1) / len(errors)
    errors = np.concatenate([[0.0], errors])
    recall = np.concatenate([[0.0], recall])
    aucs = []
    for t in thresholds:
        last = int(np.searchsorted(errors, t, side="left"))
        r = np.concatenate([recall[:last], [recall[last - 1]]])
        e = np.concatenate([errors[:last], [t]])
        aucs.append(float(np.trapezoid(r, x=e) / t))
    return aucs


def mean_average_accuracy(errors: Iterable[float], thresholds: Sequence[float] = (5, 10, 20)) -> float:
    """glue-factory's mAA: the mean of pose_auc over the thresholds."""
    return float(np.mean(pose_auc(errors, thresholds)))


# ---------------------------------------------------------------------------------------------------------
# Map-free relocalisation metrics (Arnold et al., "Map-free Visual Relocalization", ECCV 2022; the benchmark
# MicKey reports on): VCRE, its 90 px acceptance threshold, the 25 cm / 5 deg pose threshold, and the AUC of the
# precision-recall curve ranked by confidence (../shared/spec/benchmark_protocol.md section 6).

VCRE_THRESHOLD_PX = 90.0  # ~10 % of the 540x720 Map-free image diagonal (Map-free paper)
POSE_THRESHOLDS = (0.25, 5.0)  # metres, degrees


def virtual_grid(step: float = 0.3, num: tuple[int, int, int] = (7, 4, 7), z_near: float = 1.8) -> np.ndarray:
    """The Map-free virtual AR points in camera coordinates (metres): a 7x4x7 grid, 0.3 m apart, centred in x
    (±0.9 m) and y (±0.45 m), from z = 1.8 m to 3.6 m in front of the camera. (196, 3)."""
    axes = [(np.arange(n) - (n - 1) / 2) * step for n in num[:2]] + [z_near + np.arange(num[2]) * step]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def vcre(T_est: np.ndarray, T_gt: np.ndarray, K: np.ndarray, width: int, height: int,
         points: np.ndarray | None = None) -> float:
    """Virtual correspondence reprojection error (px) of an estimated 4x4 pose of the query camera.

    `T_est`, `T_gt` map reference (world) coordinates to query-camera coordinates; `K` the query camera
    (pixel corner convention: image spans [0, W] x [0, H]). The virtual points sit in front of the TRUE query
    camera; they are projected with the true pose and with the estimated one (camera coordinates
    T_est · T_gt⁻¹ · P), both projections clipped to the image, and the mean pixel distance is returned.
    """
    P = virtual_grid() if points is None else np.asarray(points, np.float64)
    P_est = P @ (T_est @ np.linalg.inv(T_gt))[:3, :3].T + (T_est @ np.linalg.inv(T_gt))[:3, 3]

    def project(X: np.ndarray) -> np.ndarray:
        uv = X @ np.asarray(K, np.float64).T
        z = np.where(np.abs(uv[:, 2:]) < 1e-9, 1e-9, uv[:, 2:])
        return np.clip(uv[:, :2] / z, [0, 0], [width, height])

    return float(np.linalg.norm(project(P) - project(P_est), axis=1).mean())


def precision_recall_auc(confidence: Sequence[float], accepted: Sequence[bool], total: int) -> float:
    """Map-free AUC: average precision of the curve obtained by ranking the estimates by descending
    confidence; `total` counts every query, failures (no estimate) included, so they lower the recall."""
    conf = np.asarray(confidence, np.float64)
    ok = np.asarray(accepted, bool)
    if total <= 0 or ok.size == 0:
        return 0.0
    order = np.argsort(-conf, kind="stable")
    hits = np.cumsum(ok[order])
    precision = hits / np.arange(1, len(ok) + 1)
    recall_gain = ok[order] / total
    return float(np.sum(precision * recall_gain))
