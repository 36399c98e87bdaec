"""L2M as a `PairMatcher` (dense=True) for the SfM pipeline and the benchmarks.

``get_matcher("l2m-tiny" | "l2m-vitb" | "l2m++", conf, device)``; conf keys (``default_conf``):
``variant`` (overrides the registered name), ``weights`` / ``coarse_weights`` (path, cache-dir name, "random"
or None = the variant's default file), ``coarse_res`` / ``upsample_res`` (None = variant default,
0 = no second pass), ``coarse_levels`` / ``upsample_levels`` (levels of each pass, e.g. [16, 8, 4] and
[4, 2, 1]), ``cycle_px`` (forward-backward check in warp pixels; None = variant default, 0 = off),
``normalize``, ``num_samples``, ``sample_thresh``, ``cache_size`` (images whose encoder features are kept,
keyed by image name), ``seed`` (sampling), ``pair_batch``.

``match_pair(image0, image1, name0, name1)`` takes RGB uint8 (H, W, 3) and returns the threshold-balanced
samples of the symmetric warp in pixels of the ORIGINAL images, hloc convention (top-left pixel centre
(0, 0)), scores = certainty (1 above sample_thresh).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from l2m.config import merge_conf
from l2m_sfm.matchers import PairMatches

default_conf: dict[str, Any] = {
    "variant": None,
    "weights": None,
    "coarse_weights": None,
    "coarse_res": None,
    "upsample_res": None,
    "coarse_levels": None,
    "upsample_levels": None,
    "normalize": None,
    "num_samples": None,
    "sample_thresh": None,
    "cache_size": 16,
    "seed": 0,
    "pair_batch": None,
    "cycle_px": None,
}


class L2MPairMatcher:
    """Dense L2M matcher behind the project's PairMatcher protocol."""

    dense = True

    def __init__(self, variant: str, conf: dict | None = None, device: str = "cpu") -> None:
        from l2m.models.zoo import build_model

        self.conf = merge_conf(default_conf, conf, f"matcher.{variant}")
        variant = self.conf["variant"] or variant
        self.name = variant
        keys = ("coarse_res", "coarse_levels", "upsample_levels", "normalize", "num_samples", "sample_thresh",
                "cache_size", "pair_batch")
        model_conf = {k: self.conf[k] for k in keys if self.conf[k] is not None}
        for key in ("upsample_res", "cycle_px"):  # None: variant default; 0: off
            if self.conf[key] is not None:
                model_conf[key] = self.conf[key] or None
        self.model = build_model(variant, weights=self.conf["weights"], coarse_weights=self.conf["coarse_weights"],
                                 device=device, conf=model_conf)

    def match_pair(self, image0: np.ndarray, image1: np.ndarray,
                   name0: str | None = None, name1: str | None = None) -> PairMatches:
        """Dense match + balanced sampling -> pixels (hloc convention) of the given images."""
        out = self.model.match(image0, image1, name0, name1)
        gen = torch.Generator().manual_seed(int(self.conf["seed"]))
        matches, cert = self.model.sample(out, generator=gen)
        k0, k1 = self.model.to_pixel_coordinates(matches.cpu(), image0.shape[0], image0.shape[1],
                                                 image1.shape[0], image1.shape[1], hloc=True)
        return PairMatches(k0.numpy().astype(np.float32), k1.numpy().astype(np.float32),
                           cert.cpu().numpy().astype(np.float32))


def build_l2m_tiny(conf: dict, device: str = "cpu") -> L2MPairMatcher:
    """CPU variant (XFeat backbone + tiny decoder)."""
    return L2MPairMatcher("l2m-tiny", conf, device)


def build_l2m_vitb(conf: dict, device: str = "cpu") -> L2MPairMatcher:
    """L2M ICCV 3D-aware ViT-B/14 coarse encoder + full decoder."""
    return L2MPairMatcher("l2m-vitb", conf, device)


def build_l2m_pp(conf: dict, device: str = "cpu") -> L2MPairMatcher:
    """Official L2M++ (ViT-L/14 + RoMa-outdoor decoder) checkpoints."""
    return L2MPairMatcher("l2m++", conf, device)
