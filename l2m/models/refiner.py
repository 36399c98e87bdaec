"""Convolutional refiners (``decoder.conv_refiner.<level>``) and the local correlation they use.

Input channels, in order: f_A | f_B sampled at the current flow | disp_emb(40/32 · s · (flow - grid_A))
| local correlation ((2r+1)² channels, only when r > 0). Blocks: ``block1`` and ``hidden_blocks.i`` are
Sequential(depthwise 5×5 conv, BatchNorm(momentum 0.01), ReLU, 1×1 conv); ``out_conv`` (1×1, C -> 3) runs in fp32
and gives (Δx, Δy, Δcertainty-logit). The sampling of B and the correlation carry no gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .gp import cell_centres


def local_correlation(fa: torch.Tensor, fb: torch.Tensor, flow: torch.Tensor, radius: int,
                      budget: int = 1 << 25) -> torch.Tensor:
    """(B, C, h, w) x2, flow (B, 2, h, w) -> (B, (2r+1)², h, w) = <f_A, f_B(flow + offset)> / sqrt(C).

    Offsets are k·2/w in x and k·2/h in y for k = -r..r, channel (ky + r)(2r + 1) + (kx + r), bilinear sampling
    with zero padding, no gradient. Offsets are sampled in groups so the sampled window tensor never holds more
    than `budget` elements (the full-size level-16 window would be ~1.5 GB per pair).
    """
    b, c, h, w = fa.shape
    k = 2 * radius + 1
    with torch.no_grad():
        d = torch.arange(-radius, radius + 1, dtype=torch.float32, device=fa.device)
        oy, ox = torch.meshgrid(d * 2 / h, d * 2 / w, indexing="ij")
        offsets = torch.stack((ox, oy), dim=-1).reshape(-1, 2)
        coords = flow.permute(0, 2, 3, 1).float()
        fa32, fb32 = fa.float() / c ** 0.5, fb.float()
        group = max(1, budget // (b * c * h * w))
        out = []
        for s in range(0, k * k, group):
            o = offsets[s:s + group]
            grid = (coords[:, :, :, None, :] + o).reshape(b, h, w * len(o), 2)
            win = F.grid_sample(fb32, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            out.append(torch.einsum("bchwk,bchw->bkhw", win.reshape(b, c, h, w, len(o)), fa32))
        return torch.cat(out, dim=1).to(fa.dtype)


def _block(c: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c, c, 5, padding=2, groups=c), nn.BatchNorm2d(c, momentum=0.01),
                         nn.ReLU(inplace=True), nn.Conv2d(c, c, 1))


class ConvRefiner(nn.Module):
    """One pyramid level's refiner; ``channels`` = 2·proj + disp_dim + (2r+1)² (0 when radius is 0)."""

    def __init__(self, proj_dim: int, disp_dim: int, radius: int, hidden_blocks: int) -> None:
        super().__init__()
        self.radius = radius
        self.channels = 2 * proj_dim + disp_dim + ((2 * radius + 1) ** 2 if radius else 0)
        self.block1 = _block(self.channels)
        self.hidden_blocks = nn.Sequential(*[_block(self.channels) for _ in range(hidden_blocks)])
        self.out_conv = nn.Conv2d(self.channels, 3, 1)
        self.disp_emb = nn.Conv2d(2, disp_dim, 1)

    def forward(self, fa: torch.Tensor, fb: torch.Tensor, flow: torch.Tensor,
                scale_factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (delta flow (B, 2, h, w) in refiner units, delta certainty logit (B, 1, h, w)), both fp32."""
        b, _, h, w = fa.shape
        with torch.no_grad():
            fb_hat = F.grid_sample(fb.float(), flow.permute(0, 2, 3, 1).float(), mode="bilinear",
                                   padding_mode="zeros", align_corners=False).to(fa.dtype)
        grid = cell_centres(h, w, fa.device).permute(2, 0, 1)[None]
        emb = self.disp_emb(40 / 32 * scale_factor * (flow - grid))
        parts = [fa, fb_hat, emb.to(fa.dtype)]
        if self.radius:
            parts.append(local_correlation(fa, fb, flow, self.radius).to(fa.dtype))
        # channels-last: the depthwise 5×5 convs run ~3× faster on CPU (oneDNN) than in NCHW at the fine levels
        x = torch.cat(parts, dim=1)
        x = x.contiguous(memory_format=torch.channels_last)
        d = self.hidden_blocks(self.block1(x))
        with torch.autocast(device_type=fa.device.type, enabled=False):
            d = self.out_conv(d.float())
        return d[:, :2], d[:, 2:]
