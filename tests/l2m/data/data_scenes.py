"""Small synthetic scenes shared by the data-engine tests (64-128 px); imported as a plain module."""
from __future__ import annotations

import math

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
