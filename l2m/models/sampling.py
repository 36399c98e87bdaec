"""Sparse matches from a dense warp: threshold-balanced sampling, keypoint matching, pixel conversion.

Coordinates are normalised to [-1, 1] with pixel centres at -1 + (2i+1)/N, matches as (x_A, y_A, x_B, y_B).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kde_density(x: torch.Tensor, std: float = 0.1, max_elems: int = 1 << 23, refs: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """density_i = sum_j exp(-|x_i - x_j|² / (2 std²)) for (N, D) points, in row chunks (no N×N matrix).

    With ``refs`` < N the sum runs over a random subset of `refs` points, scaled by N / refs (an unbiased
    estimate; used on CPU where the exact O(N²) sum costs seconds for 20k candidates).
    """
    n = x.shape[0]
    x = x.float()
    ref, scale = x, 1.0
    if refs is not None and n > refs:
        ref = x[torch.randperm(n, generator=generator)[:refs].to(x.device)]
        scale = n / refs
    chunk = max(1, max_elems // max(len(ref), 1))
    # -|x - r|² / (2 std²) as one matmul: [x, |x|², 1] · [r, -1/2, -|r|²/2]^T / std²
    k = 1 / std ** 2
    lhs = torch.cat((x, x.square().sum(1, keepdim=True), torch.ones_like(x[:, :1])), 1)
    rhs = torch.cat((ref * k, torch.full_like(ref[:, :1], -k / 2), ref.square().sum(1, keepdim=True) * (-k / 2)), 1)
    out = torch.empty(n, dtype=torch.float32, device=x.device)
    for s in range(0, n, chunk):
        # clamp at exp(-80) ~ 2e-35: below it exp() returns denormals, ~10x slower on x86 CPUs, and adds nothing
        logk = lhs[s:s + chunk] @ rhs.T
        out[s:s + chunk] = logk.clamp_(min=-80, max=0).exp_().sum(dim=1) * scale
    return out


def sample_matches(warp: torch.Tensor, certainty: torch.Tensor, num: int = 10000, thresh: float = 0.05,
                   balanced: bool = True, generator: torch.Generator | None = None,
                   std: float = 0.1, kde_refs: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Threshold-balanced sampling (spec §5) -> ((n, 4) matches, (n,) thresholded certainties), n <= num.

    1. certainty > thresh is set to 1; 2. draw min(4·num, #px) candidates without replacement by certainty;
    3. Gaussian KDE (std 0.1) on the 4-D matches; 4. weights 1/(density + 1), 1e-7 where density < 10;
    5. draw min(num, #candidates) without replacement by those weights.
    ``kde_refs``: estimate the density from that many random candidates instead of all (see kde_density).
    """
    matches = warp.reshape(-1, 4)
    cert = certainty.reshape(-1).float().clone()
    cert[cert > thresh] = 1
    positive = int((cert > 0).sum())
    if positive == 0 or num <= 0:
        return matches[:0], cert[:0]
    n_cand = min((4 if balanced else 1) * num, positive)
    idx = torch.multinomial(cert, n_cand, replacement=False, generator=generator)
    good, good_cert = matches[idx], cert[idx]
    if not balanced:
        return good, good_cert
    density = kde_density(good, std, refs=kde_refs, generator=generator)
    p = 1 / (density + 1)
    p[density < 10] = 1e-7
    sel = torch.multinomial(p, min(num, len(good)), replacement=False, generator=generator)
    return good[sel], good_cert[sel]


def match_keypoints(x_a: torch.Tensor, x_b: torch.Tensor, warp: torch.Tensor, certainty: torch.Tensor,
                    max_dist: float = 0.005, cert_th: float = 0.0, symmetric: bool = False,
                    chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Mutual nearest neighbours between keypoints of A warped to B and keypoints of B (normalised coords).

    `warp` (H, W, 4) and `certainty` (H, W); with ``symmetric=True`` a (H, 2W, 4) warp whose left (A->B) half
    is used. Returns index tensors (ia, ib) of mutual NN pairs closer than `max_dist` with certainty > cert_th.
    """
    if symmetric:
        w = warp.shape[1] // 2
        warp, certainty = warp[:, :w], certainty[:, :w]
    return _mnn(x_a, x_b, warp, certainty, max_dist, cert_th, chunk)


def _mnn(x_a, x_b, warp, certainty, max_dist, cert_th, chunk):
    grid = x_a[None, None].float()
    to_b = F.grid_sample(warp[..., 2:].permute(2, 0, 1)[None].float(), grid, mode="bilinear",
                         align_corners=False)[0, :, 0].T
    cert = F.grid_sample(certainty[None, None].float(), grid, mode="bilinear", align_corners=False)[0, 0, 0]
    xb = x_b.float()
    na, nb = len(to_b), len(xb)
    if na == 0 or nb == 0:
        e = torch.zeros(0, dtype=torch.long, device=x_a.device)
        return e, e
    best_b = torch.empty(na, dtype=torch.long, device=xb.device)
    best_d = torch.empty(na, device=xb.device)
    col_min = torch.full((nb,), float("inf"), device=xb.device)
    col_arg = torch.zeros(nb, dtype=torch.long, device=xb.device)
    for s in range(0, na, chunk):
        d = torch.cdist(to_b[s:s + chunk], xb)
        best_d[s:s + chunk], best_b[s:s + chunk] = d.min(dim=1)
        m, a = d.min(dim=0)
        better = m < col_min
        col_min[better], col_arg[better] = m[better], a[better] + s
    ia = torch.arange(na, device=xb.device)
    keep = (col_arg[best_b] == ia) & (best_d < max_dist) & (cert > cert_th)
    return ia[keep], best_b[keep]


def to_pixel_coordinates(coords: torch.Tensor, height: int, width: int, hloc: bool = False) -> torch.Tensor:
    """Normalised (..., 2) -> pixels: x = W/2·(x+1) (top-left pixel centre at 0.5; with hloc=True at 0)."""
    scale = torch.tensor([width / 2, height / 2], device=coords.device, dtype=torch.float32)
    px = (coords.float() + 1) * scale
    return px - 0.5 if hloc else px


def to_normalized_coordinates(pixels: torch.Tensor, height: int, width: int, hloc: bool = False) -> torch.Tensor:
    """Inverse of :func:`to_pixel_coordinates`."""
    scale = torch.tensor([width / 2, height / 2], device=pixels.device, dtype=torch.float32)
    return (pixels.float() + (0.5 if hloc else 0.0)) / scale - 1


def _sample_at(field: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Bilinear values of a (H, W, C) field at (n, 2) normalised points -> (n, C)."""
    grid = pts[None, None].float()
    return F.grid_sample(field.permute(2, 0, 1)[None].float(), grid, mode="bilinear",
                         align_corners=False)[0, :, 0].T


def warp_points(pts: torch.Tensor, warp: torch.Tensor, certainty: torch.Tensor, to_b: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Map (n, 2) normalised points of A into B (``to_b``) or of B into A through a symmetric (H, 2W, 4) warp.

    Returns (n, 2) normalised positions in the other image and (n,) bilinear certainties.
    """
    w = warp.shape[1] // 2
    half, cert = (warp[:, :w, 2:], certainty[:, :w]) if to_b else (warp[:, w:, :2], certainty[:, w:])
    out = _sample_at(torch.cat((half.float(), cert[..., None].float()), -1), pts)
    return out[:, :2], out[:, 2]


def _nearest(query: torch.Tensor, ref: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Index and distance of each query's nearest reference point ((n, 2), (m, 2) -> (n,), (n,))."""
    idx = torch.zeros(len(query), dtype=torch.long, device=query.device)
    dist = torch.full((len(query),), float("inf"), device=query.device)
    if len(ref) == 0:
        return idx, dist
    for s in range(0, len(query), chunk):
        dist[s:s + chunk], idx[s:s + chunk] = torch.cdist(query[s:s + chunk], ref).min(dim=1)
    return idx, dist


def anchor_matches(x_a: torch.Tensor, x_b: torch.Tensor, warp: torch.Tensor, certainty: torch.Tensor,
                   radius_px: float = 2.0, cert_th: float = 0.05
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keypoint matches mutual through BOTH directions of a symmetric (H, 2W, 4) warp (normalised coords).

    A's keypoint i warped into B has B's keypoint j as nearest neighbour within `radius_px`, B's keypoint j warped
    into A has i as nearest neighbour within `radius_px`, and both certainties exceed `cert_th`. Distances are
    pixels of the warp grid (the matcher's working resolution, W = warp width / 2, H = warp height).
    Returns (ia, ib, score = min of the two certainties).
    """
    h, w = warp.shape[0], warp.shape[1] // 2
    px = torch.tensor([w / 2, h / 2], device=warp.device)
    xa, xb = x_a.float().to(warp.device), x_b.float().to(warp.device)
    if len(xa) == 0 or len(xb) == 0:
        e = torch.zeros(0, dtype=torch.long, device=warp.device)
        return e, e, torch.zeros(0, device=warp.device)
    a_in_b, cert_a = warp_points(xa, warp, certainty, to_b=True)
    b_in_a, cert_b = warp_points(xb, warp, certainty, to_b=False)
    fwd, d_fwd = _nearest(a_in_b * px, xb * px)
    bwd, d_bwd = _nearest(b_in_a * px, xa * px)
    ia = torch.arange(len(xa), device=warp.device)
    keep = (bwd[fwd] == ia) & (d_fwd <= radius_px) & (d_bwd[fwd] <= radius_px) \
        & (cert_a > cert_th) & (cert_b[fwd] > cert_th)
    ia = ia[keep]
    ib = fwd[keep]
    return ia, ib, torch.minimum(cert_a[ia], cert_b[ib])


def warp_agreement(x_a: torch.Tensor, x_b: torch.Tensor, warp: torch.Tensor, certainty: torch.Tensor,
                   radius_px: float = 4.0, cert_th: float = 0.05) -> torch.Tensor:
    """(n,) bool: the warp maps matched point x_a[k] within `radius_px` (warp pixels) of x_b[k], certainly.

    Used to gate a dense pair on the detector's own matches: a warp that hallucinates overlap agrees with them
    only by chance.
    """
    if len(x_a) == 0:
        return torch.zeros(0, dtype=torch.bool, device=warp.device)
    h, w = warp.shape[0], warp.shape[1] // 2
    px = torch.tensor([w / 2, h / 2], device=warp.device)
    a_in_b, cert = warp_points(x_a.float().to(warp.device), warp, certainty, to_b=True)
    return ((a_in_b - x_b.float().to(warp.device)) * px).norm(dim=1).le(radius_px) & (cert > cert_th)
