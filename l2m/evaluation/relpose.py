"""Relative-pose protocols of the two-view benchmarks: named presets and the estimators they use.

Upstream numbers differ more by protocol than by method (../shared/spec/benchmark_protocol.md §2), so a
`Protocol` names every choice: the resize of the image given to the matcher, the match cap, the estimator,
the RANSAC threshold AND the pixel frame it is measured in, confidence, iterations, trials, shuffling, the
failure value and the minimum number of matches. Presets: loftr, roma, gluefactory-opencv,
gluefactory-poselib, poselib, l2m-official (per dataset: megadepth1500, scannet1500, scenes).

Pixel conventions: keypoints are in the hloc convention (centre of the top-left pixel at (0, 0)).
Intrinsics read from COLMAP models and from the MegaDepth / ScanNet index files are in the COLMAP
convention (top-left pixel centre at (0.5, 0.5)); `K_colmap_to_hloc` subtracts 0.5 from the principal
point, and `estimate_relative_pose` expects K in the hloc convention of the keypoints' frame.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from l2m.config import ConfigError, merge_conf
from l2m.geometry import relative_pose_error

DATASETS = ("megadepth1500", "scannet1500", "scenes")
ESTIMATORS = ("opencv", "poselib", "pycolmap")


@dataclass(frozen=True)
class Protocol:
    """Every choice that changes a relative-pose AUC; stored next to every number."""

    name: str
    dataset: str
    resize: str  # image given to the matcher: "none" | "long:N[/M]" | "short:N[/M]" | "fixed:WxH" (/M: floor
    #              the size to a multiple of M)
    max_matches: int | None  # keep the N highest-scoring matches, None = all
    estimator: str  # "opencv" (findEssentialMat + recoverPose) | "poselib" | "pycolmap"
    opencv_method: str  # "RANSAC" | "USAC_MAGSAC" (opencv only)
    threshold: float  # RANSAC threshold in pixels of `threshold_frame`
    threshold_frame: str  # "original" | "input" (the matcher's image) | a resize rule of a virtual frame
    confidence: float
    max_iterations: int
    trials: int  # estimations per pair; each one is a sample of the AUC
    shuffle: bool  # permute the matches before each trial (OpenCV RANSAC is deterministic in the order)
    failure_error: float  # pose error given to a failed pair (inf or 90 degrees)
    min_matches: int  # fewer matches -> failure without estimation
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly record (inf written as the string "inf")."""
        d = dataclasses.asdict(self)
        d["failure_error"] = "inf" if math.isinf(self.failure_error) else self.failure_error
        return d


_OPENCV_05 = dict(estimator="opencv", opencv_method="RANSAC", threshold=0.5, confidence=0.99999,
                  max_iterations=1000, trials=1, shuffle=False, failure_error=math.inf, min_matches=5,
                  max_matches=None)
_POSELIB_1 = dict(estimator="poselib", opencv_method="RANSAC", threshold=1.0, confidence=0.9999,
                  max_iterations=100000, trials=1, shuffle=False, failure_error=math.inf, min_matches=5,
                  max_matches=None)

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "loftr": {  # LoFTR repo test config: 840 (df 8), threshold in original pixels, 1 trial, failure inf
        "megadepth1500": dict(_OPENCV_05, resize="long:840/8", threshold_frame="original"),
        "scannet1500": dict(_OPENCV_05, resize="fixed:640x480", threshold_frame="original"),
        "scenes": dict(_OPENCV_05, resize="long:840/8", threshold_frame="original"),
        "notes": "zju3dv/LoFTR src/utils/metrics.py; cv2.findEssentialMat on K-normalised points, "
                 "thr = 0.5 px / mean(fx0, fy0, fx1, fy1), recoverPose on every returned E",
    },
    "roma": {  # RoMa/DKM: 5000 matches, 1200-px frame, 5 reshuffled trials, exception -> 90 degrees
        "megadepth1500": dict(_OPENCV_05, resize="long:1200", threshold_frame="input", max_matches=5000,
                              trials=5, shuffle=True, failure_error=90.0),
        "scannet1500": dict(_OPENCV_05, resize="short:480", threshold_frame="input", max_matches=5000,
                            trials=5, shuffle=True, failure_error=90.0),
        "scenes": dict(_OPENCV_05, resize="long:1200", threshold_frame="input", max_matches=5000,
                       trials=5, shuffle=True, failure_error=90.0),
        "notes": "Parskatt/RoMa romatch/benchmarks; 5 trials with reshuffled matches, without the ScanNet "
                 "loop's duplicated last trial; matches capped to the 5000 best scores (RoMa samples them)",
    },
    "gluefactory-opencv": {  # glue-factory with the SP+LG model YAML: opencv 0.5 (MD) / 1.0 (SN), resized frame
        "megadepth1500": dict(_OPENCV_05, resize="long:1600", threshold_frame="input"),
        "scannet1500": dict(_OPENCV_05, resize="none", threshold_frame="input", threshold=1.0),
        "scenes": dict(_OPENCV_05, resize="long:1024", threshold_frame="input"),
        "notes": "cvg/glue-factory eval/megadepth1500.py + scannet1500.py, estimator opencv; no threshold sweep",
    },
    "gluefactory-poselib": {  # glue-factory pipeline default for MD: poselib at 1.0 px in the resized frame
        "megadepth1500": dict(_POSELIB_1, resize="long:1600", threshold_frame="input"),
        "scannet1500": dict(_POSELIB_1, resize="none", threshold_frame="input"),
        "scenes": dict(_POSELIB_1, resize="long:1024", threshold_frame="input"),
        "notes": "cvg/glue-factory estimator poselib (LO-RANSAC + bundle refinement), max_epipolar_error = thr",
    },
    "poselib": {  # ours: poselib at 1 px in ORIGINAL pixels, so the threshold means the same for every matcher
        "megadepth1500": dict(_POSELIB_1, resize="long:1200", threshold_frame="original"),
        "scannet1500": dict(_POSELIB_1, resize="none", threshold_frame="original"),
        "scenes": dict(_POSELIB_1, resize="long:1024", threshold_frame="original"),
        "notes": "l2m-sfm default for ground-truth scenes (the figures in ../shared/data/strecha/README.md); "
                 "poselib LO-RANSAC, max_epipolar_error 1 px in original pixels",
    },
    "l2m-official": {  # Sharpiless/L2M MINIMA harness: pre-resize 1200 (x8), threshold in original pixels
        "megadepth1500": dict(_OPENCV_05, resize="long:1200/8", threshold_frame="original"),
        "scannet1500": dict(_OPENCV_05, resize="fixed:640x480", threshold_frame="original"),
        "scenes": dict(_OPENCV_05, resize="long:1200/8", threshold_frame="original"),
        "notes": "Sharpiless/L2M MINIMA-benchmarks; the matcher conf (560 -> 864 for L2M++) is separate",
    },
}


def get_protocol(name: str, dataset: str, overrides: Mapping[str, Any] | None = None) -> Protocol:
    """The named preset for a dataset, with `key=value` overrides (unknown keys raise ConfigError)."""
    if name not in PRESETS:
        raise ConfigError(f"Unknown protocol preset {name!r}; available: {', '.join(PRESETS)}")
    if dataset not in DATASETS:
        raise ConfigError(f"Unknown benchmark dataset {dataset!r}; available: {', '.join(DATASETS)}")
    base = dict(PRESETS[name][dataset], name=name, dataset=dataset, notes=PRESETS[name]["notes"])
    conf = merge_conf(base, overrides, where="protocol")
    if conf["failure_error"] in ("inf", "Infinity"):
        conf["failure_error"] = math.inf
    protocol = Protocol(**conf)
    check_protocol(protocol)
    return protocol


def check_protocol(p: Protocol) -> None:
    """Raise ConfigError with the offending field when a protocol is inconsistent."""
    if p.estimator not in ESTIMATORS:
        raise ConfigError(f"protocol.estimator={p.estimator!r}; use one of {ESTIMATORS}")
    if p.opencv_method not in ("RANSAC", "USAC_MAGSAC"):
        raise ConfigError(f"protocol.opencv_method={p.opencv_method!r}; use RANSAC or USAC_MAGSAC")
    if p.trials < 1 or p.threshold <= 0 or not 0 < p.confidence < 1:
        raise ConfigError(f"protocol needs trials >= 1, threshold > 0, 0 < confidence < 1: {p}")
    parse_resize(p.resize)
    if p.threshold_frame not in ("original", "input"):
        parse_resize(p.threshold_frame)


# ---------------------------------------------------------------------------------------------------------
# Resize rules and pixel frames


def parse_resize(rule: str) -> tuple[str, Any, int]:
    """Split a resize rule into (kind, size, multiple); raises ConfigError on a malformed rule."""
    try:
        if rule == "none":
            return "none", None, 1
        kind, arg = rule.split(":", 1)
        size, _, mult = arg.partition("/")
        multiple = int(mult) if mult else 1
        if kind in ("long", "short"):
            return kind, int(size), multiple
        if kind == "fixed":
            w, h = size.lower().split("x")
            return kind, (int(w), int(h)), multiple
    except ValueError:
        pass
    raise ConfigError(f"Bad resize rule {rule!r}; use none, long:N, long:N/8, short:N or fixed:WxH")


def resized_size(width: int, height: int, rule: str) -> tuple[int, int]:
    """(width, height) after a resize rule; long/short scale up as well as down, as the upstream harnesses."""
    kind, size, multiple = parse_resize(rule)
    if kind == "none":
        w, h = width, height
    elif kind == "fixed":
        w, h = size
    else:
        scale = size / (max(width, height) if kind == "long" else min(width, height))
        w, h = int(round(width * scale)), int(round(height * scale))
    return max(multiple, w // multiple * multiple), max(multiple, h // multiple * multiple)


def rescale_keypoints(kpts: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Map hloc-convention pixel coordinates between two resolutions of one image ((w, h) sizes)."""
    s = np.array([to_size[0] / from_size[0], to_size[1] / from_size[1]])
    return (np.asarray(kpts, np.float64) + 0.5) * s - 0.5


def K_colmap_to_hloc(K: np.ndarray) -> np.ndarray:
    """Intrinsics with pixel centres at +0.5 (COLMAP, MegaDepth, ScanNet files) -> centres at 0 (hloc)."""
    K = np.array(K, np.float64)
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    return K


def rescale_K(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """hloc-convention intrinsics of a resized image (consistent with `rescale_keypoints`)."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    K = np.array(K, np.float64)
    K[0, :] *= sx
    K[1, :] *= sy
    K[0, 2] += 0.5 * sx - 0.5
    K[1, 2] += 0.5 * sy - 0.5
    return K


def threshold_frame_size(protocol: Protocol, original: tuple[int, int], input_: tuple[int, int]) -> tuple[int, int]:
    """(w, h) of the frame the RANSAC threshold is measured in, for one image."""
    if protocol.threshold_frame == "original":
        return original
    if protocol.threshold_frame == "input":
        return input_
    return resized_size(*original, protocol.threshold_frame)


# ---------------------------------------------------------------------------------------------------------
# Estimators: kpts (N, 2) and K (3, 3) in one hloc-convention frame per image; R, t map camera 0 to camera 1


def _estimate_opencv(k0, k1, K0, K1, p: Protocol, rng: np.random.Generator):
    n0 = cv2.undistortPoints(k0.reshape(-1, 1, 2), K0, None).reshape(-1, 2)
    n1 = cv2.undistortPoints(k1.reshape(-1, 1, 2), K1, None).reshape(-1, 2)
    f_mean = np.mean([K0[0, 0], K0[1, 1], K1[0, 0], K1[1, 1]])
    method = cv2.RANSAC if p.opencv_method == "RANSAC" else cv2.USAC_MAGSAC
    cv2.setRNGSeed(int(rng.integers(2**31 - 1)))
    E, mask = cv2.findEssentialMat(n0, n1, np.eye(3), method=method, prob=p.confidence,
                                   threshold=p.threshold / f_mean, maxIters=p.max_iterations)
    if E is None or mask is None:
        return None
    best = None
    for i in range(0, E.shape[0] - E.shape[0] % 3, 3):  # several E's from the 5-point solver: keep the best
        n, R, t, m = cv2.recoverPose(E[i:i + 3], n0, n1, np.eye(3), mask=mask.copy())
        if best is None or n > best[0]:
            best = (n, R, t.ravel(), m.ravel() > 0)
    if best is None:
        return None
    return best[1], best[2], mask.ravel() > 0


def _pinhole(K: np.ndarray) -> dict[str, Any]:
    w, h = int(round(2 * K[0, 2] + 1)), int(round(2 * K[1, 2] + 1))  # only used for bookkeeping
    return {"model": "PINHOLE", "width": max(w, 1), "height": max(h, 1),
            "params": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]}


def _estimate_poselib(k0, k1, K0, K1, p: Protocol, rng: np.random.Generator):
    import poselib

    ransac = {"max_epipolar_error": p.threshold, "success_prob": p.confidence,
              "max_iterations": p.max_iterations, "seed": int(rng.integers(2**31 - 1))}
    pose, info = poselib.estimate_relative_pose(k0, k1, _pinhole(K0), _pinhole(K1), ransac, {})
    inliers = np.asarray(info.get("inliers", []), bool)
    if inliers.sum() < 5:
        return None
    return np.asarray(pose.R), np.asarray(pose.t).ravel(), inliers


def _estimate_pycolmap(k0, k1, K0, K1, p: Protocol, rng: np.random.Generator):
    import pycolmap

    cams = []
    for K in (K0, K1):  # pycolmap cameras use pixel centres at +0.5: shift K and points alike
        c = _pinhole(K)
        cams.append(pycolmap.Camera(model="PINHOLE", width=c["width"], height=c["height"],
                                    params=[K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5]))
    opts = pycolmap.RANSACOptions()
    opts.max_error = p.threshold
    opts.confidence = p.confidence
    opts.max_num_trials = p.max_iterations
    opts.random_seed = int(rng.integers(2**31 - 1))
    res = pycolmap.estimate_essential_matrix(k0 + 0.5, k1 + 0.5, cams[0], cams[1], opts)
    if res is None:
        return None
    pose = res["cam2_from_cam1"]
    return pose.rotation.matrix(), np.asarray(pose.translation).ravel(), np.asarray(res["inlier_mask"], bool)


_ESTIMATE = {"opencv": _estimate_opencv, "poselib": _estimate_poselib, "pycolmap": _estimate_pycolmap}


def estimate_relative_pose(kpts0: np.ndarray, kpts1: np.ndarray, K0: np.ndarray, K1: np.ndarray,
                           protocol: Protocol, rng: np.random.Generator | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(R, t, inlier mask) with X_cam1 = R X_cam0 + t (|t| = 1), or None on failure.

    kpts (N, 2) and K (3, 3) must share one pixel frame per image, hloc convention (top-left pixel centre
    at (0, 0)); convert COLMAP-convention K with `K_colmap_to_hloc` and resize with `rescale_K`.
    The threshold is `protocol.threshold` pixels of that frame; `protocol.min_matches` is checked here.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    k0 = np.ascontiguousarray(kpts0, np.float64).reshape(-1, 2)
    k1 = np.ascontiguousarray(kpts1, np.float64).reshape(-1, 2)
    if len(k0) != len(k1):
        raise ValueError(f"kpts0 has {len(k0)} points but kpts1 has {len(k1)}")
    if len(k0) < max(protocol.min_matches, 5):
        return None
    try:
        out = _ESTIMATE[protocol.estimator](k0, k1, np.asarray(K0, np.float64), np.asarray(K1, np.float64),
                                            protocol, rng)
    except cv2.error:  # degenerate input (all points identical, ...) counts as a failure, as in RoMa
        return None
    if out is None:
        return None
    R, t, inliers = out
    norm = np.linalg.norm(t)
    if not np.all(np.isfinite(R)) or not np.isfinite(norm) or norm < 1e-12:
        return None
    return R, t / norm, inliers


def select_indices(scores: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Indices kept by the protocol's match cap: the `max_matches` highest scores (in stored order), or all."""
    n = len(scores)
    if protocol.max_matches is None or n <= protocol.max_matches:
        return np.arange(n)
    return np.sort(np.argsort(-np.asarray(scores), kind="stable")[:protocol.max_matches])


def select_matches(kpts0: np.ndarray, kpts1: np.ndarray, scores: np.ndarray, protocol: Protocol
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Apply the protocol's match cap to both keypoint arrays."""
    keep = select_indices(scores, protocol)
    return kpts0[keep], kpts1[keep]


def evaluate_pose_trials(kpts0: np.ndarray, kpts1: np.ndarray, K0: np.ndarray, K1: np.ndarray,
                         T_0to1: np.ndarray, protocol: Protocol, rng: np.random.Generator
                         ) -> list[dict[str, Any]]:
    """One record per trial: rotation / translation / pair error in degrees, inliers, success flag."""
    records = []
    for trial in range(protocol.trials):
        order = rng.permutation(len(kpts0)) if protocol.shuffle else np.arange(len(kpts0))
        est = estimate_relative_pose(kpts0[order], kpts1[order], K0, K1, protocol, rng)
        if est is None:
            f = protocol.failure_error
            records.append({"trial": trial, "success": False, "err_R": f, "err_t": f, "error": f,
                            "num_inliers": 0})
            continue
        R, t, inliers = est
        err_R, err_t = relative_pose_error(R, t, T_0to1)
        records.append({"trial": trial, "success": True, "err_R": err_R, "err_t": err_t,
                        "error": max(err_R, err_t), "num_inliers": int(np.sum(inliers))})
    return records
