"""DINOv2-compatible ViT encoders (ViT-S/B/L, patch 14) built with timm, random init, loaded from local files.

API (used by the matcher and by stage-1 training):

* ``DinoV2Encoder(size="large")`` — ``forward(images) -> (B, C, H/14, W/14)`` final-normed patch tokens
  (``x_norm_patchtokens``) as a feature map. ``images``: (B, 3, H, W), H and W multiples of 14, already
  normalised the way the caller wants (the matcher decides; upstream L2M++ feeds [0,1] images by default).
* ``encoder.vit`` is the timm ``VisionTransformer``; its ``state_dict()`` has the facebookresearch/dinov2 key
  names minus ``mask_token`` — saving ``encoder.vit.state_dict()`` gives a DINOv2-format file.
* ``load_dinov2_weights(encoder, path_or_state)`` accepts fb DINOv2 files (``mask_token`` dropped), timm
  files and FiT3D/L2M-ICCV ``{"model": ...}`` files with ``model.`` prefixes, strict otherwise.

Position embeddings: the 37×37 grid (img_size 518) is resized by timm (bicubic, antialias) for other sizes;
at 518×518 the tokens equal the fb implementation, elsewhere they differ slightly (spec §2.1).
"""
from __future__ import annotations

import os
from typing import Mapping

import torch
from torch import nn

from .checkpoint import load_into, read_state_dict, unwrap_state_dict

VIT_SIZES = {  # name: (timm model, embed dim)
    "small": ("vit_small_patch14_dinov2", 384),
    "base": ("vit_base_patch14_dinov2", 768),
    "large": ("vit_large_patch14_dinov2", 1024),
}
PATCH = 14


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
                                     dynamic_img_size=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images, H and W multiples of 14 -> (B, C, H/14, W/14) normed patch tokens."""
        b, _, h, w = images.shape
        if h % PATCH or w % PATCH:
            raise ValueError(f"ViT input size {h}x{w} is not a multiple of {PATCH}")
        tokens = self.vit.forward_features(images)[:, self.vit.num_prefix_tokens:]
        return tokens.transpose(1, 2).reshape(b, self.dim, h // PATCH, w // PATCH)


def load_dinov2_weights(encoder: DinoV2Encoder, source: str | os.PathLike | Mapping[str, torch.Tensor],
                        strict: bool = True) -> None:
    """Load DINOv2 / timm / FiT3D-format ViT weights; only ``mask_token`` may be dropped silently."""
    is_dict = isinstance(source, Mapping)
    state = unwrap_state_dict(source) if is_dict else read_state_dict(source)
    state = {(k[4:] if k.startswith("vit.") else k): v for k, v in state.items()}
    where = "state dict" if is_dict else str(source)
    load_into(encoder.vit, state, strict=strict, source=f"ViT-{encoder.size}/14 weights ({where})",
              drop=("mask_token",))
