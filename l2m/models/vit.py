"""DINOv2-compatible ViT encoders (ViT-S/B/L, patch 14) built with timm, random init, loaded from local files.

API (used by the matcher and by stage-1 training):

* ``DinoV2Encoder(size="large")`` — ``forward(images) -> (B, C, H/14, W/14)`` final-normed patch tokens
  (``x_norm_patchtokens``) as a feature map. ``images``: (B, 3, H, W), H and W multiples of 14, already
  normalised the way the caller wants (the matcher decides; upstream L2M++ feeds [0,1] images by default).
* ``encoder.vit`` is the timm ``VisionTransformer``; its ``state_dict()`` has the facebookresearch/dinov2 key
  names minus ``mask_token`` — saving ``encoder.vit.state_dict()`` gives a DINOv2-format file.
* ``load_dinov2_weights(encoder, path_or_state)`` accepts fb DINOv2 files (``mask_token`` dropped), timm
  files and FiT3D/L2M-ICCV ``{"model": ...}`` files with ``model.`` prefixes, strict otherwise.

Position embeddings follow the facebookresearch/dinov2 rule that the official L2M++ code runs (spec §2.1), not
timm's: the 37×37 grid (img_size 518) is used as is for a 37×37 token grid and otherwise resized bicubically by a
scale factor of (n + 0.1) / 37 per axis (n = tokens along that axis), align_corners False, no antialiasing
(:func:`dinov2_pos_embed`). timm resizes to the target size with antialiasing, which moves the tokens by up to
0.17 at 280 px and the final warp by up to 1.2 normalised units.
"""
from __future__ import annotations

import math
import os
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_into, read_state_dict, unwrap_state_dict

VIT_SIZES = {  # name: (timm model, embed dim)
    "small": ("vit_small_patch14_dinov2", 384),
    "base": ("vit_base_patch14_dinov2", 768),
    "large": ("vit_large_patch14_dinov2", 1024),
}
PATCH = 14


def dinov2_pos_embed(pos_embed: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(1, 1 + n², C) class + patch position embedding -> (1, 1 + h·w, C) for an h × w token grid.

    The facebookresearch/dinov2 rule (``interpolate_pos_encoding``): unchanged when h = w = n; otherwise the n × n
    grid is resized in fp32 by ``F.interpolate(scale_factor=((h + 0.1) / n, (w + 0.1) / n), mode="bicubic",
    align_corners=False)`` without antialiasing. The scale factor, not the output size, sets the sampling
    positions: output row i reads source row (i + 0.5)·n / (h + 0.1) − 0.5. Returned in pos_embed's dtype.
    """
    n = math.isqrt(pos_embed.shape[1] - 1)
    if n * n != pos_embed.shape[1] - 1:
        raise ValueError(f"pos_embed of shape {tuple(pos_embed.shape)} does not hold a square patch grid")
    if h == n and w == n:
        return pos_embed
    dim = pos_embed.shape[-1]
    grid = pos_embed[:, 1:].float().reshape(1, n, n, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((h + 0.1) / n, (w + 0.1) / n), mode="bicubic", align_corners=False)
    if tuple(grid.shape[-2:]) != (h, w):  # cannot happen for h, w >= 1 (floor(h + 0.1) = h); guards the rule
        raise RuntimeError(f"position grid resized to {tuple(grid.shape[-2:])}, expected {(h, w)}")
    patches = grid.permute(0, 2, 3, 1).reshape(1, h * w, dim)
    return torch.cat((pos_embed[:, :1].float(), patches), dim=1).to(pos_embed.dtype)


class DinoV2Encoder(nn.Module):
    """DINOv2 ViT/14 returning patch tokens as a (B, C, H/14, W/14) map."""

    def __init__(self, size: str = "large") -> None:
        super().__init__()
        import timm  # lazy: timm import is slow

        if size not in VIT_SIZES:
            raise ValueError(f"Unknown ViT size {size!r}; choose one of {sorted(VIT_SIZES)}")
        name, dim = VIT_SIZES[size]
        self.size = size
        self.dim = dim
        self.vit = timm.create_model(name, pretrained=False, num_classes=0, img_size=518,
                                     dynamic_img_size=True)  # patch_embed then returns (B, h, w, C)
        assert self.vit.num_prefix_tokens == 1 and not self.vit.no_embed_class  # one cls token, embedded

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images, H and W multiples of 14 -> (B, C, H/14, W/14) normed patch tokens."""
        b, _, h, w = images.shape
        if h % PATCH or w % PATCH:
            raise ValueError(f"ViT input size {h}x{w} is not a multiple of {PATCH}")
        vit = self.vit
        x = vit.patch_embed(images)  # (B, h, w, C)
        _, th, tw, c = x.shape
        x = torch.cat((vit.cls_token.expand(b, -1, -1).to(x.dtype), x.reshape(b, th * tw, c)), dim=1)
        x = vit.pos_drop(x + dinov2_pos_embed(vit.pos_embed, th, tw).to(x.dtype))
        # timm's forward_features after its own (timm-rule) _pos_embed: patch_drop, norm_pre, blocks, norm
        x = vit.norm(vit.blocks(vit.norm_pre(vit.patch_drop(x))))
        return x[:, 1:].transpose(1, 2).reshape(b, self.dim, th, tw)


def load_dinov2_weights(encoder: DinoV2Encoder, source: str | os.PathLike | Mapping[str, torch.Tensor],
                        strict: bool = True) -> None:
    """Load DINOv2 / timm / FiT3D-format ViT weights; only ``mask_token`` may be dropped silently."""
    is_dict = isinstance(source, Mapping)
    state = unwrap_state_dict(source) if is_dict else read_state_dict(source)
    state = {(k[4:] if k.startswith("vit.") else k): v for k, v in state.items()}
    where = "state dict" if is_dict else str(source)
    load_into(encoder.vit, state, strict=strict, source=f"ViT-{encoder.size}/14 weights ({where})",
              drop=("mask_token",))
