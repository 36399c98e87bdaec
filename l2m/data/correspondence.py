"""Ground-truth dense correspondences from depth, intrinsics and relative pose (RoMa `get_gt_warp` style).

A pixel of A is valid iff its depth is > 0, it projects in front of camera B and inside image B, B has depth
there, and the relative depth error |z_proj - z_B| / z_B is below `rel_thresh` (0.05, spec §8 / §12): this is
the occlusion (covisibility) check. Depth maps are sampled off-grid by linear interpolation of *inverse* depth inside the mesh triangle
that holds the point (exactly the rendered surface; exact on planes, where 1/z is affine in the image), and by
the nearest pixel where that triangle has an invalid vertex.

Coordinates: pixels in the centre convention of `l2m.data.lifting` (pixel j spans [j, j+1], centre j+0.5);
normalised coordinates x_n = 2x/W - 1, i.e. pixel centres at -1 + (2j+1)/W. K are in pixels of the depth map
they go with; `gt_warp` works at any output resolution because it samples in normalised coordinates.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _batch(x: Tensor, dims: int) -> tuple[Tensor, bool]:
    return (x[None], True) if x.dim() == dims else (x, False)


def to_normalized(xy: Tensor, height: int, width: int) -> Tensor:
    """Pixel (centre convention) -> normalised [-1, 1] coordinates."""
    return torch.stack([2 * xy[..., 0] / width - 1, 2 * xy[..., 1] / height - 1], -1)


def to_pixels(xy_n: Tensor, height: int, width: int) -> Tensor:
    """Normalised [-1, 1] -> pixel (centre convention) coordinates."""
    return torch.stack([(xy_n[..., 0] + 1) * width / 2, (xy_n[..., 1] + 1) * height / 2], -1)


def normalized_grid(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """(H, W, 2) normalised pixel-centre grid, x then y, values -1 + (2i+1)/N."""
    y = -1 + (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height
    x = -1 + (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width
    gy, gx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([gx, gy], -1)


def sample_depth(depth: Tensor, xy: Tensor) -> Tensor:
    """Depth (B, H, W; 0 = invalid) at pixel coordinates xy (B, N, 2) -> (B, N), 0 where unknown.

    Inverse depth is interpolated linearly inside the triangle of the pixel-grid mesh (the triangulation of
    `l2m.data.lifting.grid_faces`) that contains the point, so a depth map sampled off-grid gives exactly the
    rendered mesh surface; if a vertex of that triangle is invalid, the nearest pixel is used instead.
    """
    B, H, W = depth.shape
    u = xy[..., 0].to(depth.dtype) - 0.5
    v = xy[..., 1].to(depth.dtype) - 0.5
    j0, i0 = torch.floor(u), torch.floor(v)
    fx, fy = u - j0, v - i0
    j0, i0 = j0.long(), i0.long()
    inv = torch.where(depth > 0, 1.0 / depth.clamp_min(1e-12), torch.zeros_like(depth)).reshape(B, -1)

    def at(i: Tensor, j: Tensor) -> Tensor:
        inside = (i >= 0) & (i < H) & (j >= 0) & (j < W)
        val = torch.gather(inv, 1, (i.clamp(0, H - 1) * W + j.clamp(0, W - 1)))
        return torch.where(inside, val, torch.zeros_like(val))

    d00, d01, d10, d11 = at(i0, j0), at(i0, j0 + 1), at(i0 + 1, j0), at(i0 + 1, j0 + 1)
    lower = fx + fy <= 1
    val = torch.where(lower, d00 + fx * (d01 - d00) + fy * (d10 - d00),
                      d11 + (1 - fx) * (d10 - d11) + (1 - fy) * (d01 - d11))
    ok = torch.where(lower, (d00 > 0) & (d01 > 0) & (d10 > 0), (d11 > 0) & (d01 > 0) & (d10 > 0)) & (val > 0)
    near = at(torch.round(v).long(), torch.round(u).long())  # round(v) is the row whose centre is nearest
    near = torch.where((u > -0.5) & (u < W - 0.5) & (v > -0.5) & (v < H - 0.5), near, torch.zeros_like(near))
    inv_s = torch.where(ok, val, near)
    return torch.where(inv_s > 0, 1.0 / inv_s.clamp_min(1e-12), torch.zeros_like(inv_s))


def warp_points(xy_A: Tensor, depth_A: Tensor, depth_B: Tensor, K_A: Tensor, K_B: Tensor, T_AtoB: Tensor,
                rel_thresh: float = 0.05) -> tuple[Tensor, Tensor]:
    """Warp pixel coordinates of A (B, N, 2) into B -> (xy_B (B, N, 2) in pixels of depth_B, valid (B, N)).

    depth_A/depth_B: (B, H, W) with 0 = invalid; K_A/K_B: (B, 3, 3) pixel intrinsics of those maps;
    T_AtoB: (B, 4, 4). Also accepts unbatched inputs (then outputs are unbatched).
    """
    xy_A, squeeze = _batch(xy_A, 2)
    depth_A, _ = _batch(depth_A, 2)
    depth_B, _ = _batch(depth_B, 2)
    K_A, _ = _batch(K_A, 2)
    K_B, _ = _batch(K_B, 2)
    T_AtoB, _ = _batch(T_AtoB, 2)
    dt = torch.float64 if depth_A.dtype == torch.float64 else torch.float32
    xy_A, depth_A, depth_B = xy_A.to(dt), depth_A.to(dt), depth_B.to(dt)
    K_A, K_B, T = K_A.to(xy_A), K_B.to(xy_A), T_AtoB.to(xy_A)
    z_A = sample_depth(depth_A, xy_A)
    x = (xy_A[..., 0] - K_A[:, None, 0, 2]) / K_A[:, None, 0, 0] * z_A
    y = (xy_A[..., 1] - K_A[:, None, 1, 2]) / K_A[:, None, 1, 1] * z_A
    P = torch.stack([x, y, z_A], -1) @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]
    zp = P[..., 2]
    zs = torch.where(zp > 1e-9, zp, torch.ones_like(zp))
    xy_B = torch.stack([K_B[:, None, 0, 0] * P[..., 0] / zs + K_B[:, None, 0, 2],
                        K_B[:, None, 1, 1] * P[..., 1] / zs + K_B[:, None, 1, 2]], -1)
    Hb, Wb = depth_B.shape[-2:]
    inside = (xy_B[..., 0] >= 0) & (xy_B[..., 0] <= Wb) & (xy_B[..., 1] >= 0) & (xy_B[..., 1] <= Hb)
    z_B = sample_depth(depth_B, xy_B)
    consistent = (zp - z_B).abs() < rel_thresh * z_B
    valid = (z_A > 0) & (zp > 1e-9) & inside & (z_B > 0) & consistent
    if squeeze:
        return xy_B[0], valid[0]
    return xy_B, valid


def gt_warp(depth_A: Tensor, depth_B: Tensor, K_A: Tensor, K_B: Tensor, T_AtoB: Tensor,
            out_hw: tuple[int, int] | None = None, rel_thresh: float = 0.05) -> tuple[Tensor, Tensor]:
    """GT warp A->B at resolution out_hw: (warp (B, h, w, 2) normalised B coordinates, valid (B, h, w) bool).

    Each output pixel of A (normalised centre -1 + (2i+1)/N) gets its normalised coordinate in B; this is the
    target of the stage-2 regression loss (spec §12). Unbatched inputs give unbatched outputs.
    """
    squeeze = depth_A.dim() == 2
    if squeeze:
        depth_A, depth_B, K_A, K_B, T_AtoB = depth_A[None], depth_B[None], K_A[None], K_B[None], T_AtoB[None]
    B, Ha, Wa = depth_A.shape
    h, w = out_hw or (Ha, Wa)
    grid = normalized_grid(h, w, device=depth_A.device, dtype=torch.float64)
    xy_A = to_pixels(grid, Ha, Wa).reshape(1, -1, 2).expand(B, -1, -1)
    xy_B, valid = warp_points(xy_A, depth_A, depth_B, K_A, K_B, T_AtoB, rel_thresh)
    warp = to_normalized(xy_B, *depth_B.shape[-2:]).reshape(B, h, w, 2).float()
    valid = valid.reshape(B, h, w)
    warp = torch.where(valid[..., None], warp, torch.zeros_like(warp))
    if squeeze:
        return warp[0], valid[0]
    return warp, valid


def invert_pose(T: Tensor) -> Tensor:
    """Inverse of rigid 4x4 transforms (..., 4, 4)."""
    R, t = T[..., :3, :3], T[..., :3, 3:]
    out = torch.zeros_like(T)
    out[..., :3, :3] = R.transpose(-1, -2)
    out[..., :3, 3:] = -R.transpose(-1, -2) @ t
    out[..., 3, 3] = 1
    return out


def symmetric_gt_warp(sample: dict, out_hw: tuple[int, int] | None = None,
                      rel_thresh: float = 0.05) -> dict[str, Tensor]:
    """GT warps A->B and B->A of a sample dict (keys depth_A, depth_B, K_A, K_B, T_AtoB)."""
    wAB, vAB = gt_warp(sample["depth_A"], sample["depth_B"], sample["K_A"], sample["K_B"], sample["T_AtoB"],
                       out_hw, rel_thresh)
    wBA, vBA = gt_warp(sample["depth_B"], sample["depth_A"], sample["K_B"], sample["K_A"],
                       invert_pose(sample["T_AtoB"]), out_hw, rel_thresh)
    return {"warp_AtoB": wAB, "valid_AtoB": vAB, "warp_BtoA": wBA, "valid_BtoA": vBA}


def pack_warp(warp: Tensor, valid: Tensor, height: int, width: int) -> dict[str, np.ndarray]:
    """Compact storage of a normalised warp (h, w, 2): int16 pixels of the target at 1/16 px, -32768 = invalid.

    Target images up to 2047 px; 4 bytes per pixel instead of 9. Inverse: `unpack_warp`.
    """
    xy = to_pixels(warp.double(), height, width) * 16
    q = torch.round(xy).clamp(-32767, 32767).to(torch.int16)
    q[~valid] = -32768
    return {"warp_q16": q.cpu().numpy(), "target_hw": np.array([height, width], np.int32)}


def unpack_warp(packed: dict) -> tuple[Tensor, Tensor]:
    """Inverse of `pack_warp` -> (normalised warp (h, w, 2) float32, valid (h, w) bool)."""
    q = torch.from_numpy(np.asarray(packed["warp_q16"]))
    valid = (q != -32768).all(-1)
    h, w = (int(v) for v in packed["target_hw"])
    warp = to_normalized(q.double() / 16, h, w).float()
    return torch.where(valid[..., None], warp, torch.zeros_like(warp)), valid
