"""Two-view speed and accuracy of the sparse baselines on a Strecha scene (GT cameras), printed and saved as JSON.

Per baseline: seconds per image for extraction, seconds per pair for matching (consecutive pairs i, i+1),
matches, essential-matrix inliers (pycolmap LO-RANSAC, 2 px, GT intrinsics) and relative pose error vs GT.

    python benchmarks/twoview_baselines.py [--scene ../shared/data/strecha/fountain-P11] [--out out.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pycolmap
import torch

from l2m.geometry import relative_pose, relative_pose_error
from l2m.images import read_image
from l2m_sfm.matchers import get_matcher

BASELINES = ["sift", "disk+lightglue", "aliked+lightglue", "xfeat+lighterglue"]


def _pose(image) -> np.ndarray:
    T = np.eye(4)
    T[:3] = image.cam_from_world().matrix()
    return T


def evaluate(name: str, scene: Path, rec, images: dict, names: list[str]) -> dict:
    matcher = get_matcher(name, {}, "cpu")
    pixels = {n: read_image(scene / "images" / n) for n in names}
    feats, t_ext = {}, []
    for n in names:
        t = time.perf_counter()
        feats[n] = matcher.extract(pixels[n])
        t_ext.append(time.perf_counter() - t)
    rows = []
    for a, b in zip(names[:-1], names[1:]):
        t = time.perf_counter()
        m, _ = matcher.match(feats[a], feats[b])
        dt = time.perf_counter() - t
        k0, k1 = feats[a]["keypoints"][m[:, 0]], feats[b]["keypoints"][m[:, 1]]
        ia, ib = images[a], images[b]
        est = pycolmap.estimate_essential_matrix(k0.astype(np.float64) + 0.5, k1.astype(np.float64) + 0.5,
                                                 rec.cameras[ia.camera_id], rec.cameras[ib.camera_id],
                                                 pycolmap.RANSACOptions(max_error=2.0))
        inl, err = 0, (180.0, 180.0)
        if est is not None:
            T = est["cam2_from_cam1"].matrix()
            inl = int(est["num_inliers"])
            err = relative_pose_error(T[:, :3], T[:, 3], relative_pose(_pose(ia), _pose(ib)))
        rows.append({"pair": f"{a} {b}", "seconds": dt, "matches": len(m), "inliers": inl,
                     "err_R": err[0], "err_t": err[1]})
    return {"matcher": name, "conf": matcher.conf, "s_per_image": float(np.median(t_ext)),
            "s_per_pair": float(np.median([r["seconds"] for r in rows])),
            "keypoints": float(np.mean([len(f["keypoints"]) for f in feats.values()])),
            "first_pair": rows[0], "mean_inliers": float(np.mean([r["inliers"] for r in rows])),
            "max_err_R": float(max(r["err_R"] for r in rows)), "max_err_t": float(max(r["err_t"] for r in rows)),
            "pairs": rows}


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=repo / ".." / "shared" / "data" / "strecha" / "fountain-P11")
    parser.add_argument("--matchers", nargs="*", default=BASELINES)
    parser.add_argument("--out", type=Path, default=repo / "outputs" / "twoview_baselines.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    pycolmap.logging.minloglevel = 2
    rec = pycolmap.Reconstruction(str(args.scene / "gt"))
    images = {im.name: im for im in rec.images.values()}
    names = sorted(images)
    results = [evaluate(m, args.scene, rec, images, names) for m in args.matchers]
    print(f"{args.scene.name}: {len(names)} images, {len(names) - 1} consecutive pairs, 2 CPU threads")
    print(f"{'matcher':20s} {'s/img':>6s} {'s/pair':>7s} {'kps':>6s} {'0000/0001 matches':>18s} "
          f"{'E-inl':>6s} {'mean inl':>9s} {'max R/t err deg':>16s}")
    for r in results:
        f = r["first_pair"]
        print(f"{r['matcher']:20s} {r['s_per_image']:6.2f} {r['s_per_pair']:7.2f} {r['keypoints']:6.0f} "
              f"{f['matches']:18d} {f['inliers']:6d} {r['mean_inliers']:9.0f} "
              f"{r['max_err_R']:7.2f}/{r['max_err_t']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
