"""Differentiable Gaussian splatting in pure torch: colour/feature/alpha/depth renders of 3D Gaussians.

Conventions: `means` are 3D points in a world frame, `T_world_to_cam` maps them into the camera (X_c = R X_w + t),
`K` is in pixels with the centre of the top-left pixel at (0.5, 0.5) (the COLMAP convention, as the data engine's
intrinsics), so pixel (row i, column j) is evaluated at (j + 0.5, i + 0.5).

Footprints: every Gaussian is isotropic in 3D with world standard deviation `scales` (N,). Its projection is the
axis-aligned 2D Gaussian with sigma_x = fx·s/z, sigma_y = fy·s/z (the off-axis EWA terms are dropped, which is
exact on the optical axis and a small error for the near-fronto-parallel splats that lifting produces), widened
by a 0.3-px² low-pass variance like 3DGS. Compositing is front to back in camera depth:
alpha_i = min(0.99, o_i·exp(−½ d²)), T_i = Π_{j<i} (1 − alpha_j), out = Σ_i T_i·alpha_i·v_i.

Memory stays bounded: (Gaussian, tile) pairs are listed once, sorted by (tile, depth), and tiles are processed in
chunks of at most `max_pairs_chunk` (pixel × Gaussian) evaluations, Gaussians of a tile in depth-ordered chunks
carrying the transmittance. A gsplat backend is used when asked for, CUDA is present and gsplat is installed.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..config import merge_conf

default_conf: dict[str, Any] = {
    "tile": 16,                 # tile side in pixels
    "radius_sigmas": 3.0,       # footprint cut-off per axis, in standard deviations (alpha = 0 beyond)
    "low_pass": 0.3,            # variance (px²) added to every 2D footprint (anti-aliasing, as 3DGS)
    "max_alpha": 0.99,
    "near": 1e-3,               # Gaussians closer than this (camera z) are culled
    "max_pairs_chunk": 1_000_000,  # pixel×Gaussian evaluations per chunk (memory bound)
    "gaussians_chunk": 256,     # depth-ordered Gaussians composited per inner step
    "min_transmittance": 1e-4,  # stop compositing a tile chunk once every pixel's transmittance is below
    "backend": "torch",         # "torch" | "gsplat" | "auto" (gsplat when available on CUDA)
}


def gsplat_available() -> bool:
    """True when the optional gsplat CUDA rasteriser can be used."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def project_gaussians(means: Tensor, scales: Tensor, K: Tensor, T_world_to_cam: Tensor, low_pass: float = 0.3):
    """Project world-frame Gaussians; returns pixel centres (N,2), 2D sigmas (N,2) in px and camera depth (N,)."""
    R, t = T_world_to_cam[:3, :3], T_world_to_cam[:3, 3]
    Xc = means @ R.T + t
    z = Xc[:, 2]
    zs = z.clamp(min=1e-6)
    uv = torch.stack([K[0, 0] * Xc[:, 0] / zs + K[0, 2], K[1, 1] * Xc[:, 1] / zs + K[1, 2]], -1)
    f = torch.stack([K[0, 0], K[1, 1]])
    sigma = torch.sqrt((f[None] * scales[:, None] / zs[:, None]) ** 2 + low_pass)
    return uv, sigma, z


def render_gaussians(means: Tensor, scales: Tensor, opacities: Tensor, values: Tensor, K: Tensor,
                     T_world_to_cam: Tensor, height: int, width: int, conf: dict | None = None,
                     background: Tensor | None = None) -> dict[str, Tensor]:
    """Render N Gaussians (means (N,3) world, scales (N,) world std, opacities (N,) in [0,1], values (N,C)).

    Returns `values` (C,H,W) composited (plus `background`·(1−alpha) if given), `alpha` (H,W) accumulated
    opacity, `depth` (H,W) expected camera depth normalised by alpha (0 where alpha ≈ 0).
    """
    conf = merge_conf(default_conf, conf, "splatter")
    if means.ndim != 2 or means.shape[1] != 3:
        raise ValueError(f"render_gaussians: means must be (N,3), got {tuple(means.shape)}")
    N, C = values.shape
    if scales.shape != (N,) or opacities.shape != (N,):
        raise ValueError(f"render_gaussians: scales and opacities must be ({N},), got "
                         f"{tuple(scales.shape)} and {tuple(opacities.shape)}")
    backend = conf["backend"]
    if backend == "gsplat" or (backend == "auto" and means.is_cuda and gsplat_available()):
        out = _render_gsplat(means, scales, opacities, values, K, T_world_to_cam, height, width, conf)
    else:
        out = _render_torch(means, scales, opacities, values, K, T_world_to_cam, height, width, conf)
    if background is not None:
        out["values"] = out["values"] + background.view(-1, 1, 1) * (1 - out["alpha"])[None]
    return out


def _render_torch(means, scales, opacities, values, K, T_world_to_cam, height, width, conf):
    device, dtype = values.device, values.dtype
    N, C = values.shape
    tile = int(conf["tile"])
    uv, sigma, z = project_gaussians(means, scales, K.to(means), T_world_to_cam.to(means), conf["low_pass"])
    rad = conf["radius_sigmas"] * sigma
    ntx, nty = math.ceil(width / tile), math.ceil(height / tile)
    with torch.no_grad():  # the pair list is combinatorial; gradients flow through the evaluation below
        keep = (z > conf["near"]) & (uv[:, 0] + rad[:, 0] > 0) & (uv[:, 0] - rad[:, 0] < width) \
            & (uv[:, 1] + rad[:, 1] > 0) & (uv[:, 1] - rad[:, 1] < height) & (opacities > 0)
        keep &= torch.isfinite(uv).all(-1)
        gidx = torch.nonzero(keep).squeeze(1)
        # depth order of the kept Gaussians
        gidx = gidx[torch.argsort(z[gidx], stable=True)]  # ties: input order
        rank = torch.arange(len(gidx), device=device)
        lo = torch.floor((uv[gidx] - rad[gidx]) / tile).long()
        hi = torch.floor((uv[gidx] + rad[gidx]) / tile).long()
        lo[:, 0].clamp_(0, ntx - 1); hi[:, 0].clamp_(0, ntx - 1)
        lo[:, 1].clamp_(0, nty - 1); hi[:, 1].clamp_(0, nty - 1)
        wt = hi[:, 0] - lo[:, 0] + 1
        counts = wt * (hi[:, 1] - lo[:, 1] + 1)
        pair_g = torch.repeat_interleave(rank, counts)
        starts = torch.cumsum(counts, 0) - counts
        k = torch.arange(len(pair_g), device=device) - starts[pair_g]
        tx = lo[pair_g, 0] + k % wt[pair_g]
        ty = lo[pair_g, 1] + torch.div(k, wt[pair_g], rounding_mode="floor")
        tile_id = ty * ntx + tx
        order = torch.argsort(tile_id * max(len(gidx), 1) + pair_g)  # by tile, then depth rank
        tile_id, pair_g = tile_id[order], gidx[pair_g[order]]
        per_tile = torch.bincount(tile_id, minlength=ntx * nty)
        tile_start = torch.cumsum(per_tile, 0) - per_tile

    P = tile * tile
    out_v = torch.zeros(nty * ntx, P, C, device=device, dtype=dtype)
    out_a = torch.zeros(nty * ntx, P, device=device, dtype=dtype)
    out_d = torch.zeros(nty * ntx, P, device=device, dtype=dtype)
    inv_sig2 = 1.0 / sigma ** 2
    zv = z.to(dtype)
    busy = torch.nonzero(per_tile).squeeze(1).tolist()
    per_tile_l = per_tile.tolist()
    tile_start_l = tile_start.tolist()
    gch = int(conf["gaussians_chunk"])
    budget = int(conf["max_pairs_chunk"])
    i = 0
    results = []
    while i < len(busy):
        # a chunk of tiles whose padded (tiles × P × min(G, gch)) evaluation fits the budget
        j, gmax = i, 0
        while j < len(busy):
            g = max(gmax, min(per_tile_l[busy[j]], gch))
            if j > i and (j - i + 1) * P * g > budget:
                break
            gmax, j = g, j + 1
        tiles = busy[i:j]
        i = j
        results.append((tiles, *_composite_tiles(tiles, per_tile_l, tile_start_l, pair_g, uv, inv_sig2, opacities,
                                                 values, zv, ntx, tile, gch, conf["max_alpha"],
                                                 conf["radius_sigmas"], conf["min_transmittance"])))
    if results:
        idx = torch.tensor([t for r in results for t in r[0]], device=device)
        out_v = out_v.index_put((idx,), torch.cat([r[1] for r in results]))
        out_a = out_a.index_put((idx,), torch.cat([r[2] for r in results]))
        out_d = out_d.index_put((idx,), torch.cat([r[3] for r in results]))

    def untile(x):  # (nty*ntx, P, ...) -> (H, W, ...)
        x = x.view(nty, ntx, tile, tile, *x.shape[2:]).transpose(1, 2)
        return x.reshape(nty * tile, ntx * tile, *x.shape[4:])[:height, :width]

    alpha = untile(out_a)
    depth = untile(out_d) / alpha.clamp(min=1e-6) * (alpha > 1e-6)
    return {"values": untile(out_v).permute(2, 0, 1), "alpha": alpha, "depth": depth}


def _composite_tiles(tiles, per_tile, tile_start, pair_g, uv, inv_sig2, opac, values, z, ntx, tile,
                     gch, max_alpha, radius_sigmas, min_transmittance):
    """Front-to-back compositing of the depth-sorted Gaussians of a chunk of tiles; returns (t,P,C),(t,P),(t,P)."""
    device = values.device
    t = len(tiles)
    counts = torch.tensor([per_tile[k] for k in tiles], device=device)
    starts = torch.tensor([tile_start[k] for k in tiles], device=device)
    tiles_t = torch.tensor(tiles, device=device)
    origin = torch.stack([tiles_t % ntx, torch.div(tiles_t, ntx, rounding_mode="floor")], -1).to(uv) * tile
    centres = torch.arange(tile, device=device, dtype=uv.dtype) + 0.5
    xs, ys = origin[:, :1] + centres, origin[:, 1:] + centres  # (t,tile) pixel-centre columns / rows
    acc_v = acc_a = acc_d = 0.0
    T = torch.ones(t, tile * tile, device=device, dtype=values.dtype)
    for g0 in range(0, int(counts.max()), gch):
        slot = g0 + torch.arange(gch, device=device)
        valid = slot[None] < counts[:, None]  # (t,g)
        if not valid.any():
            break
        ids = pair_g[(starts[:, None] + slot[None]).clamp(max=len(pair_g) - 1)]
        # separable footprint: exp(-½dx²/sx²) on the tile's columns times exp(-½dy²/sy²) on its rows
        u, isg = uv[ids], inv_sig2[ids]  # (t,g,2)
        qx = (xs[:, :, None] - u[:, None, :, 0]) ** 2 * isg[:, None, :, 0]  # (t,tile,g) squared std-distances
        qy = (ys[:, :, None] - u[:, None, :, 1]) ** 2 * isg[:, None, :, 1]
        r2 = radius_sigmas ** 2  # hard per-axis cut-off: the render does not depend on the tiling
        gx = torch.exp(-0.5 * qx) * (qx <= r2)
        gy = torch.exp(-0.5 * qy) * (qy <= r2)
        fp = (gy[:, :, None] * gx[:, None]).reshape(t, tile * tile, -1)  # (t,P,g), row-major pixels
        alpha = (opac[ids][:, None] * fp).clamp(max=max_alpha) * valid[:, None]
        one_minus = 1 - alpha
        T_excl = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), one_minus[..., :-1]], -1), -1)
        w = alpha * T_excl * T[..., None]  # (t,P,g)
        acc_v = acc_v + torch.einsum("tpg,tgc->tpc", w, values[ids])
        acc_d = acc_d + torch.einsum("tpg,tg->tp", w, z[ids])
        acc_a = acc_a + w.sum(-1)
        T = T * torch.prod(one_minus, -1)
        if bool((T < min_transmittance).all()):
            break
    return acc_v, acc_a, acc_d


def _render_gsplat(means, scales, opacities, values, K, T_world_to_cam, height, width, conf):
    """gsplat backend (CUDA only); same outputs as the torch backend up to gsplat's exact EWA footprints."""
    if not gsplat_available():
        raise RuntimeError("splatter backend 'gsplat' needs CUDA and the gsplat package (pip install gsplat); "
                           "use backend='torch' instead")
    from gsplat import rasterization
    n = means.shape[0]
    quats = torch.zeros(n, 4, device=means.device, dtype=means.dtype)
    quats[:, 0] = 1
    # gsplat evaluates at pixel centres (j+0.5), as here; RGB+ED appends the expected depth as a last channel
    rgb, alpha, _ = rasterization(means, quats, scales[:, None].expand(n, 3), opacities, values,
                                  T_world_to_cam[None], K[None], width, height, near_plane=conf["near"],
                                  render_mode="RGB+ED", eps2d=conf["low_pass"])
    img, a = rgb[0], alpha[0, ..., 0]
    return {"values": img[..., :values.shape[1]].permute(2, 0, 1), "alpha": a, "depth": img[..., -1]}
