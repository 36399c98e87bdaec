"""Shared fixtures for the training tests: tiny exact planar-scene pairs (no data engine randomness needed)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


class PlanePairs(Dataset):
    """Deterministic pairs of a textured tilted plane seen from two cameras (exact depth, K, T_AtoB)."""

    def __init__(self, n: int = 8, size: int = 64, seed: int = 0, same_geometry: bool = False):
        self.n, self.size, self.seed, self.same_geometry = n, size, seed, same_geometry

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        from l2m.data.lifting import intrinsics_from_focal, pixel_grid, render_view, sample_image
        g = torch.Generator().manual_seed(self.seed * 7907 + i)
        S = self.size
        tex = torch.rand(3, S // 8, S // 8, generator=g)
        img = F.interpolate(tex[None], size=(S, S), mode="bicubic", align_corners=False)[0].clamp(0, 1)
        if self.same_geometry:  # equal covisibility in every sample: batch means split exactly over ranks
            g = torch.Generator().manual_seed(self.seed)
        xy = pixel_grid(S, S)
        a, b = (torch.rand(2, generator=g) - 0.5) * 0.01
        depth = 3.0 + a * (xy[..., 0] - S / 2) + b * (xy[..., 1] - S / 2)
        K = intrinsics_from_focal(0.6, S, S).float()
        ang = (torch.rand(3, generator=g) - 0.5) * math.radians(8)
        R = _rodrigues(ang)
        T = torch.eye(4)
        T[:3, :3] = R
        T[:3, 3] = (torch.rand(3, generator=g) - 0.5) * torch.tensor([0.4, 0.4, 0.4])
        out = render_view(depth, K, K, T, (S, S))
        img_B = sample_image(img, out["source_xy"]) * out["covered"][None]
        depth_B = torch.where(out["covered"], out["depth"], torch.zeros_like(out["depth"]))
        return {"image_A": img, "image_B": img_B.clamp(0, 1), "depth_A": depth, "depth_B": depth_B,
                "K_A": K, "K_B": K.clone(), "T_AtoB": T}


def _rodrigues(r: torch.Tensor) -> torch.Tensor:
    th = r.norm()
    k = r / th
    Kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return torch.eye(3) + math.sin(th) * Kx + (1 - math.cos(th)) * Kx @ Kx


@pytest.fixture
def plane_pairs():
    return PlanePairs


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 threads on 2 shared cores are ~10x slower than 1 (OpenMP oversubscription)
    yield
    torch.set_num_threads(n)
