"""Anchor-classification transformer (``decoder.embedding_decoder``) and the logits -> coordinate decoding.

Tokens: one per coarse cell of A, channel concat [GP mean ‖ projected A features] (dim = gp_dim + proj dim),
no positional encoding. ``depth`` DINOv2-style pre-norm blocks (LayerNorm, attention with qkv WITHOUT bias,
MLP ratio 4 with GELU, no LayerScale, no final norm), then ``to_out``: Linear dim -> anchors² + 1. Channels
0..anchors²-1 are anchor logits over a ``anchors × anchors`` grid of target cell centres (row-major, y outer);
the last channel is the certainty logit.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .gp import cell_centres


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"transformer dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block, keys norm1 / attn.{qkv,proj} / norm2 / mlp.{fc1,fc2}."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerDecoder(nn.Module):
    """(gp mean, A features) -> (anchor logits (B, anchors², h, w), certainty logit (B, 1, h, w))."""

    def __init__(self, dim: int, depth: int, heads: int, anchors: int) -> None:
        super().__init__()
        self.dim = dim
        self.anchors = anchors
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.to_out = nn.Linear(dim, anchors * anchors + 1)

    def forward(self, gp_mean: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat((gp_mean, feats), dim=1)  # cat promotes mixed fp16/fp32 to fp32
        b, c, h, w = x.shape
        if c != self.dim:
            raise ValueError(f"transformer expects {self.dim} channels (gp_dim + proj dim), got {c}")
        out = self.to_out(self.blocks(x.flatten(2).transpose(1, 2)))
        out = out.transpose(1, 2).reshape(b, -1, h, w)
        return out[:, :-1], out[:, -1:]


def anchor_coordinates(anchors: int, device: torch.device | None = None) -> torch.Tensor:
    """(anchors², 2) anchor target coordinates (x, y), index k = iy·anchors + ix."""
    return cell_centres(anchors, anchors, device).reshape(-1, 2)


def cls_to_flow(logits: torch.Tensor) -> torch.Tensor:
    """Anchor logits (B, G², h, w) -> flow (B, 2, h, w): probability-weighted mean of {m-1, m, m+1, m-G, m+G}.

    m is the arg-max anchor; indices are clamped to [0, G²-1] and ±1 wraps across rows at the grid edge
    (upstream quirk, kept for bit-compatibility).
    """
    b, c, h, w = logits.shape
    g = round(c ** 0.5)
    coords = anchor_coordinates(g, logits.device)
    prob = logits.float().softmax(dim=1)
    mode = prob.argmax(dim=1)
    index = torch.stack((mode - 1, mode, mode + 1, mode - g, mode + g), dim=1).clamp(0, c - 1)
    p = torch.gather(prob, 1, index)  # (B, 5, h, w)
    xy = coords[index]  # (B, 5, h, w, 2)
    flow = (p[..., None] * xy).sum(1) / p.sum(1)[..., None]
    return flow.permute(0, 3, 1, 2)
