"""Turn a folder of data-engine pairs (pipelines/generate_data.py) into a benchmark scene with exact metric GT.

    python pipelines/synthetic_scene.py --data OUT_OF_GENERATE_DATA --output SCENE
    python pipelines/scene_benchmark.py --scenes SCENE --matchers sift l2m-tiny --metric --output RESULTS

Each sample `<s>` (image_A, image_B, depth_A, depth_B, K_A, K_B, T_AtoB) becomes `images/<s>_A.png` and
`images/<s>_B.png`, `depth/<s>_A.npz` and `depth/<s>_B.npz` (the sample-scene depth format: `depth` float32
camera z, 0 = invalid; read by l2m_sfm.sample_scene.load_depth), one PINHOLE camera per image and the poses
(A at the identity, B at T_AtoB) in `gt/` (COLMAP text model, world-to-camera), and `pairs.txt` (`<s>_A.png
<s>_B.png`). Only the listed pairs are meaningful: every sample has its own world, all sharing one frame here.
Depth is in the engine's units (the virtual scene is built at a nominal metric scale: VCRE's grid is in metres).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from l2m_sfm.sample_scene import rotmat_to_qvec  # noqa: E402


def convert(data: Path, output: Path) -> Path:
    """Write the scene folder `output` from the generated folder `data`; returns `output`."""
    data, output = Path(data), Path(output)
    listing = data / "samples.txt"
    if not listing.is_file():
        raise SystemExit(f"error: {listing} not found; --data must be a folder written by pipelines/generate_data.py")
    samples = listing.read_text().split()
    if not samples:
        raise SystemExit(f"error: {listing} lists no sample")
    for sub in ("images", "depth", "gt"):
        (output / sub).mkdir(parents=True, exist_ok=True)
    cameras, images, pairs = [], [], []
    for s in samples:
        meta = json.loads((data / s / "meta.json").read_text())
        with np.load(data / s / "geometry.npz") as geo:
            depth = {"A": geo["depth_A"], "B": geo["depth_B"]}
        poses = {"A": np.eye(4), "B": np.asarray(meta["T_AtoB"], np.float64)}
        for side in ("A", "B"):
            name = f"{s}_{side}.png"
            shutil.copyfile(data / s / f"image_{side}.png", output / "images" / name)
            np.savez_compressed(output / "depth" / f"{s}_{side}.npz", depth=depth[side].astype(np.float32))
            K = np.asarray(meta[f"K_{side}"], np.float64)  # pixel centres at j + 0.5: COLMAP's convention
            h, w = depth[side].shape
            cam_id = len(cameras) + 1
            cameras.append(f"{cam_id} PINHOLE {w} {h} {K[0, 0]:.9f} {K[1, 1]:.9f} {K[0, 2]:.9f} {K[1, 2]:.9f}")
            q, t = rotmat_to_qvec(poses[side][:3, :3]), poses[side][:3, 3]
            images += [f"{cam_id} " + " ".join(f"{v:.12f}" for v in (*q, *t)) + f" {cam_id} {name}", ""]
        pairs.append(f"{s}_A.png {s}_B.png")
    (output / "gt" / "cameras.txt").write_text("# CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n" + "\n".join(cameras) + "\n")
    (output / "gt" / "images.txt").write_text("# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
                                              + "\n".join(images) + "\n")
    (output / "gt" / "points3D.txt").write_text("# no points\n")
    (output / "pairs.txt").write_text("\n".join(pairs) + "\n")
    return output


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder written by pipelines/generate_data.py")
    parser.add_argument("--output", type=Path, required=True, help="scene folder to write")
    args = parser.parse_args(argv)
    out = convert(args.data, args.output)
    print(f"scene with {len((out / 'pairs.txt').read_text().split()) // 2} pairs written to {out}")
    return out


if __name__ == "__main__":
    main()
