"""LoFTR (Sun et al., CVPR 2021) as a `PairMatcher` (dense=True), built on kornia's implementation.

``get_matcher("loftr", conf, device)``; conf keys (``default_conf``): ``variant`` ("outdoor" | "indoor"),
``weights`` (path or file name; None = the variant's official file), ``resize_max`` (long side given to LoFTR,
dims floored to a multiple of 8; 840 as in LoFTR's MegaDepth test config), ``match_thr`` (coarse dual-softmax
threshold, 0.2 in the official configs), ``max_matches`` (keep the best N by confidence; None = all).

Weights are the official checkpoint files, never downloaded: ``outdoor_ds.ckpt`` (outdoor) or
``indoor_ds_new.ckpt`` (indoor; built with ``temp_bug_fix=True`` as that file requires), looked up in
``$L2M_HOME/checkpoints`` or given as a path. They load strictly into ``kornia.feature.LoFTR(pretrained=None)``
from the Lightning layout ``{"state_dict": {"matcher.<key>": tensor}}``, a bare ``{"state_dict": ...}`` or a flat
state dict. ``write_random_checkpoint`` writes random weights in that layout (plumbing tests only).

LoFTR's matches are semi-dense (one per matched 8-px coarse cell, refined at stride 2), so the SfM path treats
them like L2M's: quantised into shared keypoints by ``l2m_sfm.match_dense``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np
import torch

from l2m.config import ConfigError, merge_conf
from l2m.models.checkpoint import load_into, read_state_dict, resolve_checkpoint
from l2m_sfm.baselines import resize_for_extraction, to_original
from l2m_sfm.matchers import PairMatches

OFFICIAL_FILES = {"outdoor": "outdoor_ds.ckpt", "indoor": "indoor_ds_new.ckpt"}
KEY_PREFIX = "matcher."  # the LoFTR LightningModule holds the network as `self.matcher`

default_conf: dict[str, Any] = {
    "variant": "outdoor",
    "weights": None,
    "resize_max": 840,
    "match_thr": 0.2,
    "max_matches": None,
}


def _check_variant(variant: str) -> None:
    if variant not in OFFICIAL_FILES:
        raise ConfigError(f"loftr.variant={variant!r}; use one of {', '.join(OFFICIAL_FILES)}")


def weight_file(variant: str, weights: str | os.PathLike | None = None) -> Path:
    """The checkpoint file to load; a missing one raises MissingCheckpointError naming it and the folder."""
    _check_variant(variant)
    return resolve_checkpoint(weights if weights is not None else OFFICIAL_FILES[variant],
                              what=f"LoFTR {variant} checkpoint (official {OFFICIAL_FILES[variant]})")


def build_network(variant: str, match_thr: float = 0.2) -> torch.nn.Module:
    """kornia's LoFTR with the official config of `variant`, random weights (nothing downloaded)."""
    import copy

    from kornia.feature import LoFTR
    from kornia.feature.loftr.loftr import default_cfg

    _check_variant(variant)
    cfg = copy.deepcopy(default_cfg)
    cfg["coarse"]["temp_bug_fix"] = variant == "indoor"  # indoor_ds_new.ckpt was trained with the fixed encoding
    cfg["match_coarse"]["thr"] = float(match_thr)
    return LoFTR(pretrained=None, config=cfg)


def loftr_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of an official LoFTR file (weights_only load), without the Lightning ``matcher.`` prefix."""
    state = read_state_dict(path)
    return {k[len(KEY_PREFIX):] if k.startswith(KEY_PREFIX) else k: v for k, v in state.items()}


def load_network(variant: str, weights: str | os.PathLike | None = None, match_thr: float = 0.2
                 ) -> torch.nn.Module:
    """LoFTR loaded strictly from its file; a wrong file raises CheckpointMismatchError listing the keys."""
    path = weight_file(variant, weights)
    net = build_network(variant, match_thr)
    load_into(net, loftr_state_dict(path), strict=True, source=f"LoFTR {variant} weights {path}")
    return net.eval()


def write_random_checkpoint(path: str | os.PathLike, variant: str = "outdoor", seed: int = 0) -> Path:
    """Random LoFTR weights in the official layout ``{"state_dict": {"matcher.<key>": ...}}`` (plumbing only)."""
    torch.manual_seed(seed)
    net = build_network(variant)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"state_dict": {KEY_PREFIX + k: v for k, v in net.state_dict().items()}, "epoch": 0}, tmp)
    tmp.replace(path)
    return path


def identity(name: str, conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """Variant and the SHA-1 of the weight file (for the benchmark caches); the network is not built."""
    from l2m_sfm.l2m_matcher import file_sha1

    merged = merge_conf(default_conf, conf, "matcher.loftr")
    path = weight_file(merged["variant"], merged["weights"])
    return {"variant": merged["variant"], "weights": {"name": path.name, "sha1": file_sha1(path)}}


class LoFTRPairMatcher:
    """LoFTR behind the PairMatcher protocol: grayscale input at `resize_max`, pixels of the given images."""

    name = "loftr"
    dense = True

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "cpu") -> None:
        self.conf = merge_conf(default_conf, conf, "matcher.loftr")
        self.device = device
        self.net = load_network(self.conf["variant"], self.conf["weights"], self.conf["match_thr"]).to(device)

    def _input(self, image: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        small, scale = resize_for_extraction(image, self.conf["resize_max"], multiple=8)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY) if small.ndim == 3 else small
        return torch.from_numpy(gray).float().div(255)[None, None].to(self.device), scale

    def match_pair(self, image0: np.ndarray, image1: np.ndarray,
                   name0: str | None = None, name1: str | None = None) -> PairMatches:
        """LoFTR matches (kornia: pixel centres at integers) -> hloc-convention pixels of the given images."""
        (t0, s0), (t1, s1) = self._input(image0), self._input(image1)
        with torch.inference_mode():
            out = self.net({"image0": t0, "image1": t1})
        k0 = to_original(out["keypoints0"].cpu().numpy().reshape(-1, 2), s0)
        k1 = to_original(out["keypoints1"].cpu().numpy().reshape(-1, 2), s1)
        conf = out["confidence"].float().cpu().numpy().reshape(-1)
        cap = self.conf["max_matches"]
        if cap is not None and len(conf) > cap:
            keep = np.sort(np.argsort(-conf, kind="stable")[:cap])
            k0, k1, conf = k0[keep], k1[keep], conf[keep]
        return PairMatches(k0, k1, conf.astype(np.float32))


def build_loftr(conf: dict, device: str = "cpu") -> LoFTRPairMatcher:
    """Official LoFTR checkpoints (outdoor_ds.ckpt / indoor_ds_new.ckpt) in kornia's LoFTR."""
    return LoFTRPairMatcher(conf, device)
