"""Gaussian-process coarse matcher (RoMa/L2M ``decoder.gps.<level>``), cosine kernel with fixed temperature.

For projected features x (A, n = h1·w1 tokens) and y (B, m = h2·w2 tokens):

    K(u, v) = exp((cos(u, v) - 1) / T),  cos = u·v / (|u||v| + 1e-6),  T = 0.2
    Φ_B     = cos(8π · pos_conv(coords_B))          (coords: B's cell centres, (x, y) order, 1×1 conv 2 -> gp_dim)
    μ_A     = K_AB (K_BB + σ² I)^-1 Φ_B,  σ² = 0.1  -> (B, gp_dim, h1, w1)

``solve="inverse"`` (the L2M++ / RoMa-outdoor default) computes μ_A = K_AB ((K_BB + σ²I)⁻¹ Φ_B) with an explicit
inverse, in upstream's order of operations, so the official checkpoints see the official numerics (with random
weights near-tied anchor logits downstream amplify a 1e-5 difference into a different argmax).
``solve="cholesky"`` (l2m-tiny, trained with it) factorises K_BB + σ²I (symmetric positive definite) and falls back
to an LU solve if the factorisation reports a failure; the two agree to ~1e-5 relative. Everything runs in fp32,
also under autocast.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def cell_centres(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """(h, w, 2) normalised cell-centre coordinates in (x, y) order, x = -1 + (2j + 1)/w."""
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=device)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), dim=-1)


def cosine_kernel(x: torch.Tensor, y: torch.Tensor, T: float, eps: float = 1e-6) -> torch.Tensor:
    """(B, n, d), (B, m, d) -> (B, n, m) kernel exp((cos - 1)/T)."""
    c = torch.einsum("bnd,bmd->bnm", x, y) / (x.norm(dim=-1)[..., None] * y.norm(dim=-1)[:, None] + eps)
    return ((c - 1.0) / T).exp()


class GP(nn.Module):
    """Posterior-mean GP embedding of the target grid; only parameter: ``pos_conv`` (2 -> gp_dim)."""

    def __init__(self, gp_dim: int = 512, T: float = 0.2, sigma2: float = 0.1, solve: str = "inverse") -> None:
        super().__init__()
        if solve not in ("inverse", "cholesky"):
            raise ValueError(f"GP solve must be 'inverse' or 'cholesky', got {solve!r}")
        self.solve = solve
        self.gp_dim = gp_dim
        self.T = T
        self.sigma2 = sigma2
        self.pos_conv = nn.Conv2d(2, gp_dim, 1, 1)

    def basis(self, b: int, h: int, w: int, device: torch.device) -> torch.Tensor:
        """Fourier basis of the target grid, (b, h·w, gp_dim)."""
        coords = cell_centres(h, w, device).permute(2, 0, 1)[None].expand(b, 2, h, w)
        phi = torch.cos(8 * math.pi * self.pos_conv(coords.float()))
        return phi.flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (B, C, h1, w1) source features, y: (B, C, h2, w2) target features -> (B, gp_dim, h1, w1)."""
        b, _, h1, w1 = x.shape
        _, _, h2, w2 = y.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            f = self.basis(b, h2, w2, x.device).float()
            xt = x.float().flatten(2).transpose(1, 2)
            yt = y.float().flatten(2).transpose(1, 2)
            k_yy = cosine_kernel(yt, yt, self.T)
            k_xy = cosine_kernel(xt, yt, self.T)
            a = k_yy + self.sigma2 * torch.eye(h2 * w2, device=x.device, dtype=k_yy.dtype)[None]
            if self.solve == "inverse":
                # one matrix at a time: oneMKL's batched inverse fails ("Pivots given to lu_solve must all be
                # greater or equal to 1") on a batch of two 1600×1600 matrices with 2 CPU threads (torch 2.14)
                inv = torch.stack([torch.linalg.inv(m) for m in a])
                mu = k_xy.matmul(inv.matmul(f))
            else:
                chol, info = torch.linalg.cholesky_ex(a)
                alpha = torch.linalg.solve(a, f) if bool((info != 0).any()) else torch.cholesky_solve(f, chol)
                mu = k_xy @ alpha
        return mu.transpose(1, 2).reshape(b, self.gp_dim, h1, w1)
