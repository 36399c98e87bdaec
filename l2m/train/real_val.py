"""Optional stage-2 validation on real pairs with ground-truth cameras: relative-pose AUC@5/10/20.

A scene folder holds `images/`, `gt/` (COLMAP text or binary model, poses world-to-camera) and optionally
`pairs.txt` ("name0 name1" per line; default: consecutive images). Each pair is matched with the matcher's
inference API (`match` → `sample`), the relative pose estimated with the benchmarks' protocol
(l2m_sfm.relpose, default "poselib" 1 px in original pixels) and scored with l2m_sfm.metrics.pose_auc, the same
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
    "protocol": "poselib",  # l2m_sfm.relpose preset (dataset "scenes")
    "thresholds": [5, 10, 20],
}


def _pairs(scene: Path, names: list[str], max_pairs: int) -> list[tuple[str, str]]:
    f = scene / "pairs.txt"
    if f.is_file():
        pairs = [tuple(ln.split()[:2]) for ln in f.read_text().splitlines() if len(ln.split()) >= 2]
    else:
        names = sorted(names)
        pairs = list(zip(names[:-1], names[1:]))
    return [p for p in pairs if p[0] in names and p[1] in names][:max_pairs]


@torch.no_grad()
def pose_auc_on_scene(matcher, conf: Mapping[str, Any]) -> dict[str, float]:
    """{"pose_auc@5": ..., "pose_auc@10": ..., "pose_auc@20": ..., "pose_pairs": n} of `matcher` on a scene."""
    import pycolmap

    from l2m_sfm.metrics import pose_auc
    from l2m_sfm.relpose import K_colmap_to_hloc, estimate_relative_pose, get_protocol

    from ..geometry import relative_pose_error

    conf = merge_conf(default_conf, conf, "real_val")
    scene = Path(conf["scene"])
    if not (scene / "gt").is_dir() or not (scene / "images").is_dir():
        raise FileNotFoundError(f"real_val.scene={scene} must contain images/ and gt/ (a COLMAP model)")
    rec = pycolmap.Reconstruction(str(scene / "gt"))
    by_name = {im.name: im for im in rec.images.values()}
    protocol = get_protocol(conf["protocol"], "scenes")
    errors = []
    was_training = matcher.training
    matcher.eval()
    gen = torch.Generator().manual_seed(0)
    for n0, n1 in _pairs(scene, list(by_name), int(conf["max_pairs"])):
        im0, im1 = by_name[n0], by_name[n1]
        c0, c1 = rec.cameras[im0.camera_id], rec.cameras[im1.camera_id]
        out = matcher.match(str(scene / "images" / n0), str(scene / "images" / n1))
        m, _ = matcher.sample(out, num=int(conf["num_samples"]), generator=gen)
        k0, k1 = matcher.to_pixel_coordinates(m, c0.height, c0.width, c1.height, c1.width, hloc=True)
        K0, K1 = K_colmap_to_hloc(c0.calibration_matrix()), K_colmap_to_hloc(c1.calibration_matrix())
        est = estimate_relative_pose(k0.cpu().numpy(), k1.cpu().numpy(), K0, K1, protocol,
                                     np.random.default_rng(0))
        if est is None:
            errors.append(float("inf"))
            continue
        T0, T1 = np.eye(4), np.eye(4)
        T0[:3] = im0.cam_from_world().matrix()
        T1[:3] = im1.cam_from_world().matrix()
        err_R, err_t = relative_pose_error(est[0], est[1], T1 @ np.linalg.inv(T0))
        errors.append(max(err_R, err_t))
    matcher.train(was_training)
    aucs = pose_auc(errors, conf["thresholds"])
    out = {f"pose_auc@{t}": float(a) for t, a in zip(conf["thresholds"], aucs)}
    out["pose_pairs"] = float(len(errors))
    return out
