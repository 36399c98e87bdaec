"""Optional stage-2 validation on real pairs with ground-truth cameras: relative-pose AUC@5/10/20.

A scene folder is one of pipelines/scene_benchmark.py: `images/`, `gt/` (COLMAP model, PINHOLE or
SIMPLE_PINHOLE cameras, poses world-to-camera) and optionally `pairs.txt` ("name0 name1" per line; default: all
i<j with j-i <= 3 in sorted order); `pipelines/real_pairs.py --hold-out SCENE` writes one from a reconstruction.
Each pair is matched with the matcher's inference API (`match` → `sample`), the relative pose estimated with the
benchmarks' protocol (l2m.evaluation.relpose, default "poselib" 1 px in original pixels) and scored with l2m.evaluation.metrics.pose_auc, the same
numbers the pose benchmarks report (pair error = max(rotation, translation-direction angle), failure = inf).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..config import merge_conf

default_conf: dict[str, Any] = {
    "scene": None,         # scene folder (see above); None disables real-pair validation
    "max_pairs": 10,
    "num_samples": 2000,   # matches sampled per pair
    "protocol": "poselib",  # l2m.evaluation.relpose preset (dataset "scenes")
    "thresholds": [5, 10, 20],
}


@torch.no_grad()
def pose_auc_on_scene(matcher, conf: Mapping[str, Any]) -> dict[str, float]:
    """{"pose_auc@5": ..., "pose_auc@10": ..., "pose_auc@20": ..., "pose_pairs": n} of `matcher` on a scene.

    The scene is read by l2m.data.benchmark_pairs.load_scene, as pipelines/scene_benchmark.py reads it: a missing
    folder or a distorted camera raises its BenchmarkDataError."""
    from l2m.data.benchmark_pairs import load_scene
    from l2m.evaluation.metrics import pose_auc
    from l2m.evaluation.relpose import K_colmap_to_hloc, estimate_relative_pose, get_protocol

    from ..geometry import relative_pose_error

    conf = merge_conf(default_conf, conf, "real_val")
    scene = Path(conf["scene"])
    pairs = load_scene(scene)[: int(conf["max_pairs"])]
    protocol = get_protocol(conf["protocol"], "scenes")
    errors = []
    was_training = matcher.training
    matcher.eval()
    gen = torch.Generator().manual_seed(0)
    for pair in pairs:
        out = matcher.match(str(scene / "images" / pair.name0), str(scene / "images" / pair.name1))
        m, _ = matcher.sample(out, num=int(conf["num_samples"]), generator=gen)
        (w0, h0), (w1, h1) = pair.K_size0, pair.K_size1  # the camera's size = the undistorted image's
        k0, k1 = matcher.to_pixel_coordinates(m, h0, w0, h1, w1, hloc=True)
        est = estimate_relative_pose(k0.cpu().numpy(), k1.cpu().numpy(), K_colmap_to_hloc(pair.K0),
                                     K_colmap_to_hloc(pair.K1), protocol, np.random.default_rng(0))
        if est is None:
            errors.append(float("inf"))
            continue
        err_R, err_t = relative_pose_error(est[0], est[1], pair.T_0to1)
        errors.append(max(err_R, err_t))
    matcher.train(was_training)
    aucs = pose_auc(errors, conf["thresholds"])
    out = {f"pose_auc@{t}": float(a) for t, a in zip(conf["thresholds"], aucs)}
    out["pose_pairs"] = float(len(errors))
    return out
