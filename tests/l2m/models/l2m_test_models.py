"""Small random-init L2M models for fast tests (ViT-S + VGG + micro decoder; XFeat tiny)."""
from __future__ import annotations

import numpy as np
import torch

from l2m.models.decoder import Decoder, DecoderConfig
from l2m.models.encoders import ViTCNNEncoder
from l2m.models.matcher import L2M
from l2m.models.vit import DinoV2Encoder

torch.set_num_threads(1)  # 1 thread: OpenMP barriers collapse on a shared, overloaded CPU


def micro_decoder_config(coarse_in: int = 384) -> DecoderConfig:
    return DecoderConfig(in_dims={16: coarse_in, 8: 512, 4: 256, 2: 128, 1: 64},
                         proj_dims={16: 32, 8: 16, 4: 8, 2: 8, 1: 4}, gp_dim=32, transformer_depth=1,
                         transformer_heads=2, anchors=16, disp_dims={16: 8, 8: 8, 4: 4, 2: 4, 1: 4},
                         radii={16: 2, 8: 1, 4: 1, 2: 0, 1: 0}, hidden_blocks=1)


def build_micro(conf: dict | None = None, seed: int = 0) -> L2M:
    torch.manual_seed(seed)
    model = L2M(ViTCNNEncoder(DinoV2Encoder("small")), Decoder(micro_decoder_config()),
                {"coarse_res": 56, "upsample_res": 84, **(conf or {})}, variant="micro")
    # give BN layers non-trivial statistics so that eval-mode outputs are not degenerate
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def textured_pair(h: int = 120, w: int = 160, shift: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random smooth texture and a copy shifted right by `shift` pixels (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h // 4 + 1, (w + shift) // 4 + 1, 3)).astype(np.float32)
    import cv2

    big = cv2.resize(base, ((w + shift), h), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(big[:, shift:shift + w]), np.ascontiguousarray(big[:, :w])

