"""Metric relative pose from matches + the depth of the reference image, scored with the Map-free metrics.

MicKey (Barroso-Laguna et al., CVPR 2024) predicts metric correspondences and scores the metric relative pose
of a query to a reference image with the Map-free benchmark's metrics. Here any matcher gets that metric: the
matches of a pair (image 0 = reference with metric depth, image 1 = query) are lifted to 3D with image 0's
depth, and PoseLib's absolute-pose LO-RANSAC (P3P + refinement) gives T_0to1 with its true scale. Then VCRE
(precision at 90 px), the translation error in metres, the rotation error in degrees, the 25 cm / 5 deg
precision and the confidence-ranked AUC of VCRE (`l2m.evaluation.metrics`) are reported.

Conventions: keypoints and K in one hloc-convention frame per image (top-left pixel centre at (0, 0)); depth
maps at that frame's resolution (camera z, 0 = unknown); T_0to1 maps camera-0 to camera-1 coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from l2m.geometry import rotation_error_deg
from l2m.data.benchmark_pairs import BenchPair
from l2m_bench.files import PredictionCache
from l2m_sfm.gt_matcher import depth_at
from l2m.evaluation.metrics import POSE_THRESHOLDS, VCRE_THRESHOLD_PX, precision_recall_auc, vcre
from l2m.evaluation.relpose import rescale_keypoints
from l2m_bench.run import intrinsics_at

default_conf: dict[str, Any] = {
    "threshold": 4.0,  # PnP RANSAC reprojection threshold, pixels of the query image (original resolution)
    "min_inliers": 10,  # fewer PnP inliers: failure
    "max_iterations": 10000,
}


@dataclass
class MetricPose:
    """A metric T_0to1 (4x4) and its confidence (number of PnP inliers)."""

    T_0to1: np.ndarray
    num_inliers: int
    num_lifted: int


def lift(kpts: np.ndarray, K: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame 3D points (N, 3) of hloc pixels with the depth map, and the mask of those with depth."""
    z = depth_at(np.asarray(depth, np.float64), np.asarray(kpts, np.float64))
    rays = np.linalg.solve(np.asarray(K, np.float64), np.c_[kpts, np.ones(len(kpts))].T).T
    return rays * z[:, None], z > 0


def estimate_metric_pose(kpts0: np.ndarray, kpts1: np.ndarray, K0: np.ndarray, K1: np.ndarray,
                         depth0: np.ndarray, conf: Mapping[str, Any] | None = None, seed: int = 0
                         ) -> MetricPose | None:
    """Metric T_0to1 from matches and image 0's depth (PnP LO-RANSAC, PoseLib), or None on failure."""
    import poselib

    c = {**default_conf, **dict(conf or {})}
    if len(kpts0) == 0:
        return None
    X0, ok = lift(kpts0, K0, depth0)
    if ok.sum() < max(4, c["min_inliers"]):
        return None
    K1 = np.asarray(K1, np.float64)
    camera = {"model": "PINHOLE", "width": int(2 * K1[0, 2] + 1), "height": int(2 * K1[1, 2] + 1),
              "params": [K1[0, 0], K1[1, 1], K1[0, 2], K1[1, 2]]}
    ransac = {"max_reproj_error": float(c["threshold"]), "max_iterations": int(c["max_iterations"]),
              "seed": int(seed)}
    pose, info = poselib.estimate_absolute_pose(np.asarray(kpts1, np.float64)[ok], X0[ok], camera, ransac, {})
    n = int(info.get("num_inliers", 0))
    if n < c["min_inliers"]:
        return None
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = np.asarray(pose.R), np.asarray(pose.t).ravel()
    return MetricPose(T, n, int(ok.sum()))


def metric_pose_errors(T_est: np.ndarray, T_gt: np.ndarray) -> tuple[float, float]:
    """(translation error in metres = |t_est - t_gt| of T_0to1, rotation error in degrees)."""
    return float(np.linalg.norm(T_est[:3, 3] - T_gt[:3, 3])), rotation_error_deg(T_est[:3, :3], T_gt[:3, :3])


def evaluate_metric_cache(pairs: list[BenchPair], cache: PredictionCache,
                          depth_of: Callable[[str], np.ndarray | None], conf: Mapping[str, Any] | None = None,
                          seed: int = 0) -> list[dict[str, Any]]:
    """Per-pair metric records from cached matches, in original pixels; pairs whose image 0 has no depth map
    are skipped. A failed estimate keeps its record (success False, VCRE / errors inf)."""
    records = []
    for pair in pairs:
        depth = depth_of(pair.name0)
        if depth is None:
            continue
        cached = cache.read(pair.name0, pair.name1)
        frames = []
        for kpts, K, K_size, orig, inp in ((cached.keypoints0, pair.K0, pair.K_size0, cached.original_size0,
                                            cached.input_size0),
                                           (cached.keypoints1, pair.K1, pair.K_size1, cached.original_size1,
                                            cached.input_size1)):
            frames.append((rescale_keypoints(kpts, inp, orig), intrinsics_at(K, K_size, orig)))
        (k0, K0), (k1, K1) = frames
        if depth.shape[::-1] != tuple(cached.original_size0):
            raise ValueError(f"depth map of {pair.name0} is {depth.shape[1]}x{depth.shape[0]}, the image is "
                             f"{cached.original_size0[0]}x{cached.original_size0[1]}")
        est = estimate_metric_pose(k0, k1, K0, K1, depth, conf, seed)
        rec = {"name0": pair.name0, "name1": pair.name1, "num_matches": int(len(k0)), "info": pair.info}
        if est is None:
            rec.update(success=False, vcre=float("inf"), err_t_m=float("inf"), err_R_deg=float("inf"),
                       num_inliers=0)
        else:
            K1_corner = K1.copy()
            K1_corner[:2, 2] += 0.5  # vcre clips to [0, W] x [0, H]: pixel-corner convention
            w1, h1 = cached.original_size1
            err_t, err_R = metric_pose_errors(est.T_0to1, pair.T_0to1)
            rec.update(success=True, vcre=vcre(est.T_0to1, pair.T_0to1, K1_corner, w1, h1), err_t_m=err_t,
                       err_R_deg=err_R, num_inliers=est.num_inliers, num_lifted=est.num_lifted)
        records.append(rec)
    return records


def summarize_metric(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Map-free numbers over all records (failures count in every precision and in the AUC's recall)."""
    n = len(records)
    if n == 0:
        return {"num_pairs": 0}
    vc = np.array([r["vcre"] for r in records])
    et = np.array([r["err_t_m"] for r in records])
    er = np.array([r["err_R_deg"] for r in records])
    ok = np.array([r["success"] for r in records])
    accepted = vc < VCRE_THRESHOLD_PX
    return {"num_pairs": n, "estimated": float(ok.mean()),
            "median_vcre_px": float(np.median(vc)), "vcre_precision@90px": float(accepted.mean()),
            "vcre_auc": precision_recall_auc([r["num_inliers"] for r in records if r["success"]],
                                             accepted[ok], n),
            "median_err_t_m": float(np.median(et)), "median_err_R_deg": float(np.median(er)),
            "pose_precision@25cm5deg": float(((et < POSE_THRESHOLDS[0]) & (er < POSE_THRESHOLDS[1])).mean())}


def scene_depth_loader(scene_dirs: Mapping[str, Path]) -> Callable[[str], np.ndarray | None]:
    """`<scene>/<image>` -> depth map from `<scene folder>/depth/<image stem>.npz` (sample-scene format), or
    None when the scene has no such file."""
    from l2m_sfm.sample_scene import load_depth

    def depth_of(name: str) -> np.ndarray | None:
        scene, _, image = name.partition("/")
        path = Path(scene_dirs[scene]) / "depth" / (Path(image).with_suffix("").as_posix() + ".npz")
        return load_depth(path) if path.is_file() else None

    return depth_of


def format_metric_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of summarize_metric results (one row per matcher)."""
    head = (f"{'matcher':<26} {'pairs':>5} {'est.':>5} {'VCRE med':>9} {'prec@90px':>9} {'AUC':>6} "
            f"{'t med [m]':>9} {'R med [deg]':>11} {'25cm/5deg':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['matcher']:<26} {r['num_pairs']:5d} {100 * r['estimated']:4.0f}% "
                     f"{r['median_vcre_px']:9.2f} {100 * r['vcre_precision@90px']:8.1f}% {r['vcre_auc']:6.3f} "
                     f"{r['median_err_t_m']:9.3f} {r['median_err_R_deg']:11.2f} "
                     f"{100 * r['pose_precision@25cm5deg']:8.1f}%")
    return "\n".join(lines)
