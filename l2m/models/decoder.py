"""The L2M / RoMa decoder: projections, GP coarse matcher, anchor transformer, conv refiners, level loop.

One parameterised class builds both the full-size L2M++ decoder (``DecoderConfig()`` defaults = spec §3, keys of
``spec/l2m_matcher_state_dict_keys.tsv`` under ``decoder.``) and the tiny decoder (``tiny_decoder_config()``).

API (for the matcher and the stage-2 training code):

* ``decoder.project(feats) -> feats``: per-level 1×1 conv + BN (``proj.<level>``); per image, cacheable.
* ``decoder(pa, pb, flow=None, certainty=None, upsample=False, scale_factor=1.0, record_all=None)`` on
  PROJECTED pyramids ``{level: (B, C, h, w)}`` returns ``{level: {...}}`` for the levels run, coarsest first:
  - ``flow`` (B, 2, h, w): normalised target coordinates in B, (x, y), pixel centres at -1 + (2i+1)/N;
  - ``certainty`` (B, 1, h, w): logits;
  - with ``record_all`` (default: ``self.training``): ``flow_pre_delta`` (flow before this level's refiner
    delta), ``delta_flow``; at the coarsest level also ``gm_cls`` (B, G², h, w) anchor logits and
    ``gm_certainty`` (B, 1, h, w) — what the RoMa losses (spec §12) consume.
  Pass 1 (``upsample=False``) runs ``config.levels`` starting from the GP + transformer; pass 2
  (``upsample=True``) runs ``config.upsample_levels`` starting from the given flow / certainty (resized).
  ``levels`` replaces the pass's level list (e.g. pass 1 stopping at level 4 when pass 2 refines further).
* Update rules: flow += L · (Δx / (4·W₁), Δy / (4·H₁)) with W₁, H₁ the stride-1 size of the pass;
  certainty += Δc; between levels flow and certainty are bilinearly resized and detached.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .gp import GP
from .refiner import ConvRefiner
from .transformer import TransformerDecoder, cls_to_flow


@dataclass
class DecoderConfig:
    """Widths of the decoder; defaults are the L2M++ / RoMa-outdoor sizes (spec §3)."""

    levels: tuple[int, ...] = (16, 8, 4, 2, 1)  # coarsest first; GP + transformer at levels[0]
    upsample_levels: tuple[int, ...] = (8, 4, 2, 1)
    in_dims: dict[int, int] = field(default_factory=lambda: {16: 1024, 8: 512, 4: 256, 2: 128, 1: 64})
    proj_dims: dict[int, int] = field(default_factory=lambda: {16: 512, 8: 512, 4: 256, 2: 64, 1: 9})
    gp_dim: int = 512
    gp_T: float = 0.2
    gp_sigma2: float = 0.1
    gp_solve: str = "inverse"  # explicit inverse as upstream L2M++ ("cholesky": l2m-tiny)
    transformer_depth: int = 5
    transformer_heads: int = 8
    anchors: int = 64
    disp_dims: dict[int, int] = field(default_factory=lambda: {16: 128, 8: 64, 4: 32, 2: 16, 1: 6})
    radii: dict[int, int] = field(default_factory=lambda: {16: 7, 8: 3, 4: 2, 2: 0, 1: 0})
    hidden_blocks: int | dict[int, int] = 8  # per level when a dict
    refine_init: float = 4.0

    def to_dict(self) -> dict:
        return asdict(self)


def tiny_decoder_config(in_dims: dict[int, int]) -> DecoderConfig:
    """The l2m-tiny decoder: same design, CPU-sized widths (GP 64, transformer 192×3, anchors 32²)."""
    return DecoderConfig(
        in_dims=dict(in_dims),
        proj_dims={16: 128, 8: 64, 4: 32, 2: 16, 1: 8},
        gp_dim=64, gp_solve="cholesky", transformer_depth=3, transformer_heads=4, anchors=32,
        disp_dims={16: 32, 8: 32, 4: 16, 2: 8, 1: 6},
        radii={16: 3, 8: 3, 4: 2, 2: 0, 1: 0},
        hidden_blocks={16: 2, 8: 1, 4: 1, 2: 1, 1: 0})


class Decoder(nn.Module):
    """Projections + GP + anchor transformer + conv refiners (module names as in the L2M++ checkpoint)."""

    def __init__(self, config: DecoderConfig | None = None) -> None:
        super().__init__()
        cfg = config or DecoderConfig()
        self.config = cfg
        coarse = cfg.levels[0]
        self.coarse_level = coarse
        self.proj = nn.ModuleDict({
            str(lv): nn.Sequential(nn.Conv2d(cfg.in_dims[lv], cfg.proj_dims[lv], 1), nn.BatchNorm2d(cfg.proj_dims[lv]))
            for lv in cfg.levels})
        self.gps = nn.ModuleDict({str(coarse): GP(cfg.gp_dim, cfg.gp_T, cfg.gp_sigma2, cfg.gp_solve)})
        self.embedding_decoder = TransformerDecoder(cfg.gp_dim + cfg.proj_dims[coarse], cfg.transformer_depth,
                                                    cfg.transformer_heads, cfg.anchors)
        self.conv_refiner = nn.ModuleDict({
            str(lv): ConvRefiner(cfg.proj_dims[lv], cfg.disp_dims[lv], cfg.radii[lv],
                                 cfg.hidden_blocks if isinstance(cfg.hidden_blocks, int) else cfg.hidden_blocks[lv])
            for lv in cfg.levels})

    def project(self, feats: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Apply ``proj.<level>`` to every level present."""
        return {lv: self.proj[str(lv)](f) for lv, f in feats.items() if str(lv) in self.proj}

    def forward(self, pa: dict[int, torch.Tensor], pb: dict[int, torch.Tensor],
                flow: torch.Tensor | None = None, certainty: torch.Tensor | None = None,
                upsample: bool = False, scale_factor: float = 1.0,
                record_all: bool | None = None,
                levels: tuple[int, ...] | None = None) -> dict[int, dict[str, torch.Tensor]]:
        """Run the level loop A -> B on projected pyramids; see the module docstring for the outputs."""
        record = self.training if record_all is None else record_all
        cfg = self.config
        levels = tuple(levels or (cfg.upsample_levels if upsample else cfg.levels))
        if not upsample and levels[0] != self.coarse_level:
            raise ValueError(f"pass 1 must start at the coarse level {self.coarse_level}, got levels {levels}")
        finest = levels[-1]
        h1, w1 = pa[finest].shape[-2:]
        if upsample:
            if flow is None or certainty is None:
                raise ValueError("upsample=True needs the flow and certainty of the previous pass")
            size = pa[levels[0]].shape[-2:]
            flow = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
            certainty = F.interpolate(certainty, size=size, mode="bilinear", align_corners=False)
        out: dict[int, dict[str, torch.Tensor]] = {}
        for i, lv in enumerate(levels):
            rec: dict[str, torch.Tensor] = {}
            fa, fb = pa[lv], pb[lv]
            if not upsample and lv == self.coarse_level:
                gp_mean = self.gps[str(lv)](fa, fb)
                gm_cls, gm_cert = self.embedding_decoder(gp_mean, fa)
                flow = cls_to_flow(gm_cls)
                certainty = gm_cert.float()
                if record:
                    rec["gm_cls"], rec["gm_certainty"] = gm_cls, gm_cert
            if record:
                rec["flow_pre_delta"] = flow
            delta, dcert = self.conv_refiner[str(lv)](fa, fb, flow, scale_factor)
            if record:
                rec["delta_flow"] = delta
            flow = flow + lv * torch.stack((delta[:, 0] / (cfg.refine_init * w1),
                                            delta[:, 1] / (cfg.refine_init * h1)), dim=1)
            certainty = certainty + dcert
            rec["flow"], rec["certainty"] = flow, certainty
            out[lv] = rec
            if i + 1 < len(levels):
                size = pa[levels[i + 1]].shape[-2:]
                flow = F.interpolate(flow, size=size, mode="bilinear", align_corners=False).detach()
                certainty = F.interpolate(certainty, size=size, mode="bilinear", align_corners=False).detach()
        return out
