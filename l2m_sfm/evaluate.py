"""Compare a reconstruction with a ground-truth COLMAP model (images matched by name).

The model is aligned to the GT by a similarity transform estimated robustly (LO-RANSAC, pycolmap
`estimate_sim3d_robust`) on the camera centres. Reported: registered fraction; per-image camera-centre error
(GT units, after alignment) and rotation error (degrees); their medians; and relative-pose AUC@5/10/20 over
ALL pairs of GT images, where the pose error of a pair is max(rotation error, translation-direction angle)
of the relative pose (not sign-folded: SfM knows the direction) and a pair with an unregistered image counts
as infinite error. Relative poses do not depend on the alignment.

    python -m l2m_sfm.evaluate --model OUT/sfm --gt GT_MODEL [--output eval.json]
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from l2m.config import merge_conf, write_conf
from l2m.geometry import relative_pose, relative_pose_error, rotation_error_deg
from l2m.evaluation.metrics import pose_auc

default_conf = {
    "align_max_error": None,  # RANSAC inlier threshold in GT units; None: 5 % of the GT camera spread
    "thresholds": [5, 10, 20],  # degrees, for the AUC
}


def _pose(image: pycolmap.Image) -> np.ndarray:
    """4x4 world-to-camera matrix of a posed image."""
    T = np.eye(4)
    T[:3] = image.cam_from_world().matrix()
    return T


def _posed(model: pycolmap.Reconstruction) -> dict[str, pycolmap.Image]:
    return {img.name: img for img in model.images.values() if img.has_pose}


def align(model: pycolmap.Reconstruction, gt: pycolmap.Reconstruction, max_error: float | None = None
          ) -> tuple[pycolmap.Sim3d | None, int]:
    """GT-from-model similarity from the centres of images posed in both; (None, 0) with < 3 of them."""
    est, ref = _posed(model), _posed(gt)
    names = sorted(set(est) & set(ref))
    if len(names) < 3:
        return None, 0
    src = np.array([est[n].projection_center() for n in names])
    dst = np.array([ref[n].projection_center() for n in names])
    if max_error is None:
        all_gt = np.array([im.projection_center() for im in ref.values()])
        spread = float(np.median(np.linalg.norm(all_gt - all_gt.mean(0), axis=1)))
        max_error = 0.05 * max(spread, 1e-9)
    found = pycolmap.estimate_sim3d_robust(src, dst, pycolmap.RANSACOptions(max_error=max_error))
    sim = found["tgt_from_src"] if found else None
    if sim is None:  # degenerate sample: fall back to least squares on everything
        sim = pycolmap.estimate_sim3d(src, dst)
    if sim is None:
        return None, 0
    residual = np.linalg.norm(np.array([sim * c for c in src]) - dst, axis=1)
    return sim, int((residual <= max_error).sum())


def evaluate(model: pycolmap.Reconstruction, gt: pycolmap.Reconstruction,
             conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """All metrics of `model` against `gt` as a JSON-ready dict (errors in degrees and GT units)."""
    conf = merge_conf(default_conf, conf, "evaluate")
    est, ref = _posed(model), _posed(gt)
    names = sorted(ref)
    sim, inliers = align(model, gt, conf["align_max_error"])
    per_image = []
    for name in names:
        row: dict[str, Any] = {"name": name, "registered": name in est,
                               "center_error": math.inf, "rotation_error_deg": math.inf}
        if name in est and sim is not None:
            aligned_center = sim * est[name].projection_center()
            row["center_error"] = float(np.linalg.norm(aligned_center - ref[name].projection_center()))
            # cam_from_gtworld = cam_from_world * world_from_gtworld; rotation part R_cw R_sim^T
            R_aligned = _pose(est[name])[:3, :3] @ sim.rotation.matrix().T
            row["rotation_error_deg"] = rotation_error_deg(R_aligned, _pose(ref[name])[:3, :3])
        per_image.append(row)
    pair_errors = []
    for a, b in itertools.combinations(names, 2):
        if a in est and b in est:
            T_est = relative_pose(_pose(est[a]), _pose(est[b]))
            T_gt = relative_pose(_pose(ref[a]), _pose(ref[b]))
            err_r, err_t = relative_pose_error(T_est[:3, :3], T_est[:3, 3], T_gt, fold_sign=False)
            pair_errors.append(max(err_r, err_t))
        else:
            pair_errors.append(math.inf)
    reg = [r for r in per_image if r["registered"]]
    aucs = pose_auc(pair_errors, conf["thresholds"])
    return {
        "num_gt_images": len(names),
        "num_registered": len(reg),
        "registered_fraction": len(reg) / max(len(names), 1),
        "unregistered": [r["name"] for r in per_image if not r["registered"]],
        "alignment": {"inliers": inliers, "scale": float(sim.scale) if sim is not None else None},
        "median_center_error": _median([r["center_error"] for r in reg]),
        "max_center_error": float(max((r["center_error"] for r in reg), default=math.inf)),
        "median_rotation_error_deg": _median([r["rotation_error_deg"] for r in reg]),
        "max_rotation_error_deg": float(max((r["rotation_error_deg"] for r in reg), default=math.inf)),
        "num_pairs": len(pair_errors),
        "median_pair_error_deg": _median(pair_errors),
        "auc": {f"@{t}": a for t, a in zip(conf["thresholds"], aucs)},
        "per_image": per_image,
    }


def to_json(value: Any) -> Any:
    """Replace non-finite floats by None so the output is standard JSON."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else math.inf


def format_table(result: dict[str, Any]) -> str:
    """Human-readable per-image table and summary."""
    lines = [f"{'image':<28} {'reg':>4} {'centre err':>12} {'rot err (deg)':>14}"]
    for r in result["per_image"]:
        lines.append(f"{r['name'][:28]:<28} {'yes' if r['registered'] else 'NO':>4} "
                     f"{r['center_error']:>12.4g} {r['rotation_error_deg']:>14.4f}")
    auc = " / ".join(f"{100 * v:.1f}" for v in result["auc"].values())
    lines += [
        f"registered {result['num_registered']}/{result['num_gt_images']}"
        f" ({100 * result['registered_fraction']:.0f} %), alignment inliers {result['alignment']['inliers']}",
        f"median centre error {result['median_center_error']:.4g} (GT units), "
        f"median rotation error {result['median_rotation_error_deg']:.4f} deg",
        f"relative-pose AUC {'/'.join(result['auc'])} deg over {result['num_pairs']} pairs: {auc} %",
    ]
    return "\n".join(lines)


def _load(path: Path, what: str) -> pycolmap.Reconstruction:
    path = Path(path)
    if not path.is_dir() or not any((path / f"images{ext}").exists() for ext in (".bin", ".txt")):
        raise SystemExit(f"{what} {path} is not a COLMAP model directory (needs images.bin or images.txt)")
    return pycolmap.Reconstruction(str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate a COLMAP model against a ground-truth model.")
    parser.add_argument("--model", type=Path, required=True, help="reconstruction (e.g. OUT/sfm)")
    parser.add_argument("--gt", type=Path, required=True, help="ground-truth COLMAP model (bin or txt)")
    parser.add_argument("--output", type=Path, help="write the metrics as JSON here")
    parser.add_argument("--align-max-error", type=float, default=None, help="RANSAC threshold, GT units")
    args = parser.parse_args(argv)
    result = evaluate(_load(args.model, "--model"), _load(args.gt, "--gt"),
                      {"align_max_error": args.align_max_error})
    print(format_table(result))
    if args.output:
        write_conf(to_json(result), args.output)
        print(f"Metrics written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
