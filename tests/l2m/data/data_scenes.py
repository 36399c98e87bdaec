"""Small synthetic scenes shared by the data-engine tests (64-128 px); imported as a plain module."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch

torch.set_num_threads(2)


def rotation(axis_angle) -> torch.Tensor:
    v = torch.tensor(axis_angle, dtype=torch.float64)
    th = float(v.norm())
    k = v / th
    Kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(th) * Kx + (1 - math.cos(th)) * Kx @ Kx


def pose(axis_angle, t) -> torch.Tensor:
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = rotation(axis_angle)
    T[:3, 3] = torch.tensor(t, dtype=torch.float64)
    return T



def textured_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Random smooth-ish RGB texture (uint8) so that inpainting and colours have something to work on."""
    r = np.random.default_rng(seed)
    small = r.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    import cv2
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def smooth_image(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)


def write_colmap_model(root: Path, n_points: dict[tuple[int, ...], int]) -> tuple[Path, Path]:
    """COLMAP text model of three 160x120 images; `n_points[(ids...)]` 3D points seen by those images
    (observation x = 10 + point id + image id: the "motion" between images is 1 px in x)."""
    images, model = root / "images", root / "model"
    images.mkdir(parents=True)
    model.mkdir()
    for i in (1, 2, 3):
        cv2.imwrite(str(images / f"im{i}.png"), smooth_image(160, 120, i))
    obs: dict[int, list[tuple[float, float, int]]] = {1: [], 2: [], 3: []}
    points = []
    pid = 0
    for ids, n in n_points.items():
        for _ in range(n):
            pid += 1
            track = []
            for i in ids:
                obs[i].append((10.0 + pid + i, 20.0 + 0.5 * pid, pid))  # x depends on the image: a "motion"
                track += [i, len(obs[i]) - 1]
            points.append(f"{pid} 0 0 1 0 0 0 0.5 " + " ".join(map(str, track)))
    (model / "cameras.txt").write_text("1 PINHOLE 160 120 100 100 80 60\n")
    lines = []
    for i in (1, 2, 3):
        lines.append(f"{i} 1 0 0 0 0 0 {i} 1 im{i}.png")
        lines.append(" ".join(f"{x} {y} {p}" for x, y, p in obs[i]))
    (model / "images.txt").write_text("\n".join(lines) + "\n")
    (model / "points3D.txt").write_text("\n".join(points) + "\n")
    return images, model
