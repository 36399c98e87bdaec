"""Encoders of the matcher: ``forward(images, levels) -> {level: feature map}`` for every variant.

* ``ViTCNNEncoder`` (l2m++, l2m-vitb): fine levels 1/2/4/8 from ``cnn`` (VGG19-BN, in the state dict as
  ``encoder.cnn.layers.*``) and level 16 from a frozen DINOv2 ViT held OUTSIDE the module tree (not in
  ``state_dict()``, not in ``parameters()``; moved by ``.to()``; always eval, run under no-grad), as upstream.
* ``XFeatPyramid`` (l2m-tiny, see ``cnn.py``): all five levels from one XFeat backbone (in the state dict).

Both expose ``coarse_encoder``: a module with ``forward(images) -> (B, C, h, w)`` (stage-1 training target).
"""
from __future__ import annotations

import torch
from torch import nn

from .cnn import VGG19Pyramid
from .vit import DinoV2Encoder


class ViTCNNEncoder(nn.Module):
    """VGG19-BN fine pyramid + an external frozen ViT/14 for level 16."""

    def __init__(self, vit: DinoV2Encoder) -> None:
        super().__init__()
        self.cnn = VGG19Pyramid()
        object.__setattr__(self, "_vit", vit.eval().requires_grad_(False))
        self.channels = {**VGG19Pyramid.channels, 16: vit.dim}

    @property
    def coarse_encoder(self) -> DinoV2Encoder:
        return self._vit

    def _apply(self, fn, recurse=True):  # keep the unregistered ViT on the same device / dtype policy
        super()._apply(fn, recurse)
        self._vit._apply(fn)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self._vit.eval()
        return self

    def forward(self, images: torch.Tensor, levels: tuple[int, ...] = (1, 2, 4, 8, 16)) -> dict[int, torch.Tensor]:
        """(B, 3, H, W), H and W multiples of 14 when level 16 is asked -> {level: map}."""
        feats = self.cnn(images) if any(lv in levels for lv in (1, 2, 4, 8)) else {}
        feats = {lv: f for lv, f in feats.items() if lv in levels}
        if 16 in levels:
            with torch.no_grad():
                vit_dtype = next(self._vit.parameters()).dtype
                feats[16] = self._vit(images.to(vit_dtype)).float()
        return feats
