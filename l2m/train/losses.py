"""Training losses: RoMa-style dense-matching losses (stage 2) and masked feature agreement (stage 1).

Coordinates are normalised to [−1, 1] with pixel centres at −1 + (2i+1)/N, (x, y) order, as the decoder's flow.
Every function returns a dict of scalar tensors with a `total` entry; a term with no valid pixel is 0 but stays
connected to the graph (so DDP's gradient all-reduce sees every parameter).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import merge_conf

roma_default_conf: dict[str, Any] = {
    "ce_weight": 0.01,          # weight of every certainty BCE (GM certainty and per-level certainty)
    "alpha": 0.5,               # robust-loss shape a
    "c": 1e-4,                  # robust-loss scale per level: c·L
    "local_largest_scale": 8,   # levels ≤ this get the local mask from the previous level's EPE
    "local_dist": {"1": 4, "2": 4, "4": 8, "8": 8},
    "valid_threshold": 0.99,
    "level_weights": {},        # optional {"16": w, ...}; default weight 1 at every level
}


def zero_like_graph(*tensors: Tensor) -> Tensor:
    """A zero scalar attached to the graph of `tensors` (keeps DDP's reducer and backward happy)."""
    return sum(t.sum() for t in tensors) * 0.0


def anchor_targets(x2: Tensor, num_anchors: int) -> Tensor:
    """Index (row-major, y outer) of the anchor of a √K×√K grid nearest to each GT coordinate x2 (...,2)."""
    res = int(round(num_anchors ** 0.5))
    if res * res != num_anchors:
        raise ValueError(f"anchor_targets: {num_anchors} anchor logits do not form a square grid")
    ij = torch.floor((x2.clamp(-1, 1) + 1) * res / 2).long().clamp(0, res - 1)
    return ij[..., 1] * res + ij[..., 0]


def gm_cls_loss(gm_cls: Tensor, gm_certainty: Tensor, x2: Tensor, prob: Tensor, ce_weight: float = 0.01,
                valid_threshold: float = 0.99) -> dict[str, Tensor]:
    """Coarse anchor classification: CE of gm_cls (B,K,h,w) vs nearest anchor on valid pixels + BCE certainty."""
    target = anchor_targets(x2, gm_cls.shape[1])
    valid = prob > valid_threshold
    cert = F.binary_cross_entropy_with_logits(gm_certainty[:, 0], prob)
    if valid.any():
        cls = F.cross_entropy(gm_cls, target, reduction="none")[valid].mean()
    else:
        cls = zero_like_graph(gm_cls, gm_certainty)
    return {"gm_cls": cls, "gm_certainty": cert, "total": cls + ce_weight * cert}


def robust_penalty(epe: Tensor, cs: float, alpha: float) -> Tensor:
    """RoMa's robust regression penalty c^a((EPE/c)²+1)^(a/2) per element (minimum c^a at EPE 0)."""
    return cs ** alpha * ((epe / cs) ** 2 + 1) ** (alpha / 2)


def local_radius(conf: Mapping[str, Any], level: int) -> float:
    """RoMa's local mask at `level`: supervise where the previous level's EPE is below this (normalised)."""
    return (2 / 512) * conf["local_dist"][str(level)] * level


def robust_regression_loss(flow: Tensor, certainty: Tensor, x2: Tensor, prob: Tensor, level: int,
                           ce_weight: float = 0.01, alpha: float = 0.5, c: float = 1e-4,
                           valid_threshold: float = 0.99) -> dict[str, Tensor]:
    """Robust EPE loss c^a((EPE/c)²+1)^(a/2) (c scaled by the level) on valid pixels + BCE certainty vs prob."""
    epe = (flow.permute(0, 2, 3, 1) - x2).norm(dim=-1)
    cert = F.binary_cross_entropy_with_logits(certainty[:, 0], prob)
    valid = prob > valid_threshold
    if valid.any():
        reg = robust_penalty(epe, c * level, alpha)[valid].mean()
    else:
        reg = zero_like_graph(flow, certainty)
    return {"regression": reg, "certainty": cert, "total": reg + ce_weight * cert, "epe": epe.detach()}


def roma_loss(corresps: Mapping[int, Mapping[str, Tensor]], gt: Mapping[int, tuple[Tensor, Tensor]],
              conf: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
    """Sum of RoMa losses over levels (coarse → fine).

    `corresps[L]` holds `flow` (B,2,h,w) and `certainty` (B,1,h,w) logits, and at the coarsest level optionally
    `gm_cls` (B,K,h,w) and `gm_certainty` (B,1,h,w). `gt[L] = (x2 (B,h,w,2), prob (B,h,w))` at that level's size.
    """
    conf = merge_conf(roma_default_conf, conf, "roma_loss")
    losses: dict[str, Tensor] = {}
    total = 0.0
    prev_epe = None
    for level in sorted(corresps, reverse=True):
        out = corresps[level]
        x2, prob = gt[level]
        prob = prob.to(out["flow"].dtype)
        h, w = out["flow"].shape[-2:]
        if x2.shape[1:3] != (h, w):
            raise ValueError(f"roma_loss: GT at level {level} is {tuple(x2.shape[1:3])}, flow is {(h, w)}")
        if prev_epe is not None and level <= conf["local_largest_scale"]:
            near = F.interpolate(prev_epe[:, None], size=(h, w), mode="nearest-exact")[:, 0]
            prob = prob * (near < local_radius(conf, level))
        weight = float(conf["level_weights"].get(str(level), 1.0))
        if "gm_cls" in out:
            g = gm_cls_loss(out["gm_cls"].float(), out["gm_certainty"].float(), x2, prob, conf["ce_weight"],
                            conf["valid_threshold"])
            losses[f"gm_cls_{level}"] = g["gm_cls"]
            losses[f"gm_certainty_{level}"] = g["gm_certainty"]
            total = total + weight * g["total"]
        r = robust_regression_loss(out["flow"].float(), out["certainty"].float(), x2, prob, level,
                                   conf["ce_weight"], conf["alpha"], conf["c"], conf["valid_threshold"])
        losses[f"regression_{level}"] = r["regression"]
        losses[f"certainty_{level}"] = r["certainty"]
        total = total + weight * r["total"]
        prev_epe = r["epe"]
    losses["total"] = total
    return losses


def feature_agreement_loss(pred: Tensor, target: Tensor, mask: Tensor, l1_weight: float = 1.0,
                           cos_weight: float = 0.0) -> dict[str, Tensor]:
    """Masked L1 (mean over channels and masked pixels) + optional (1 − cosine) between (B,C,h,w) feature maps."""
    if pred.shape != target.shape or mask.shape != (pred.shape[0], *pred.shape[2:]):
        raise ValueError(f"feature_agreement_loss: shapes pred {tuple(pred.shape)}, target {tuple(target.shape)},"
                         f" mask {tuple(mask.shape)} do not agree")
    m = mask.to(pred.dtype)
    n = m.sum()
    if n <= 0:
        zero = zero_like_graph(pred)
        return {"feat_l1": zero, "feat_cos": zero, "total": zero}
    l1 = ((pred - target).abs().mean(1) * m).sum() / n
    cos = ((1 - F.cosine_similarity(pred, target, dim=1, eps=1e-6)) * m).sum() / n
    return {"feat_l1": l1, "feat_cos": cos, "total": l1_weight * l1 + cos_weight * cos}


def _at_points(field: Tensor, x: Tensor, mode: str = "bilinear") -> Tensor:
    """(B,C,h,w) sampled at normalised points x (B,N,2) -> (B,N,C) (pixel-centre convention)."""
    return F.grid_sample(field, x[:, :, None].to(field.dtype), mode=mode, align_corners=False)[..., 0].transpose(1, 2)


def sparse_roma_loss(corresps: Mapping[int, Mapping[str, Tensor]], x1: Tensor, x2: Tensor, valid: Tensor,
                     conf: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
    """The RoMa losses of `roma_loss` at sparse correspondences: points x1 (B,N,2) of A match x2 (B,N,2) of B
    (normalised), `valid` (B,N) bool (padding False).

    Each level's flow / certainty / anchor logits are read at x1 (bilinear; anchors nearest). Levels ≤
    `local_largest_scale` supervise only points the previous level put within `local_dist` (RoMa's local mask);
    their certainty target is that mask (1 elsewhere). No negatives: pixels without a point get no certainty
    target, so mix these batches with dense ones.
    """
    conf = merge_conf(roma_default_conf, conf, "roma_loss")
    losses: dict[str, Tensor] = {}
    total = 0.0
    prev_epe = None
    for level in sorted(corresps, reverse=True):
        out = corresps[level]
        target = valid.float()
        if prev_epe is not None and level <= conf["local_largest_scale"]:
            target = target * (prev_epe < local_radius(conf, level))
        weight = float(conf["level_weights"].get(str(level), 1.0))
        ok = target > conf["valid_threshold"]
        if "gm_cls" in out:
            logits = _at_points(out["gm_cls"].float(), x1, mode="nearest")
            gm_cert = _at_points(out["gm_certainty"].float(), x1, mode="nearest")[..., 0]
            cls = F.cross_entropy(logits[ok], anchor_targets(x2, logits.shape[-1])[ok]) if ok.any() else \
                zero_like_graph(out["gm_cls"])
            cert = F.binary_cross_entropy_with_logits(gm_cert[valid], target[valid]) if valid.any() else \
                zero_like_graph(out["gm_certainty"])
            losses[f"gm_cls_{level}"], losses[f"gm_certainty_{level}"] = cls, cert
            total = total + weight * (cls + conf["ce_weight"] * cert)
        flow = _at_points(out["flow"].float(), x1)
        cert_logit = _at_points(out["certainty"].float(), x1)[..., 0]
        epe = (flow - x2).norm(dim=-1)
        reg = robust_penalty(epe, conf["c"] * level, conf["alpha"])[ok].mean() if ok.any() else \
            zero_like_graph(out["flow"])
        cert = F.binary_cross_entropy_with_logits(cert_logit[valid], target[valid]) if valid.any() else \
            zero_like_graph(out["certainty"])
        losses[f"regression_{level}"], losses[f"certainty_{level}"] = reg, cert
        total = total + weight * (reg + conf["ce_weight"] * cert)
        prev_epe = epe.detach()
    losses["total"] = total
    return losses
