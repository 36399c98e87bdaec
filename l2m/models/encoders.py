"""Encoders of the matcher: ``forward(images, levels) -> {level: feature map}`` for every variant.

* ``ViTCNNEncoder`` (l2m++, l2m-vitb): fine levels 1/2/4/8 from ``cnn`` (VGG19-BN, in the state dict as
  ``encoder.cnn.layers.*``) and level 16 from a frozen DINOv2 ViT held OUTSIDE the module tree (not in
  ``state_dict()``, not in ``parameters()``; moved by ``.to()``; always eval, run under no-grad), as upstream.
  Precision as upstream: on CUDA the ViT is cast to fp16 and run without autocast, the CNN runs under the
  caller's fp16 autocast; on the CPU everything is fp32 (``vit_dtype``).
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
            dtype = vit_dtype(images.device)
            if next(self._vit.parameters()).dtype != dtype:
                self._vit.to(dtype)
            # the official policy: the ViT's own weights in fp16 on CUDA, run OUTSIDE autocast (LayerNorm,
            # softmax and the position-embedding add in fp16 too); fp32 on the CPU
            with torch.no_grad(), torch.autocast(device_type=images.device.type, enabled=False):
                feats[16] = self._vit(images.to(dtype)).float()
        return feats


def vit_dtype(device: torch.device) -> torch.dtype:
    """Precision of the frozen coarse ViT on `device`: fp16 on CUDA (as the official L2M++ code casts it), else fp32."""
    return torch.float16 if device.type == "cuda" else torch.float32
