"""L2M as a `PairMatcher` (dense=True) for the SfM pipeline and the benchmarks.

``get_matcher("l2m-tiny" | "l2m-vitb" | "l2m++", conf, device)``; conf keys (``default_conf``):
``variant`` (overrides the registered name), ``weights`` / ``coarse_weights`` (path, cache-dir name, "random"
or None = the variant's default file), ``coarse_res`` / ``upsample_res`` (None = variant default,
0 = no second pass), ``keep_aspect`` (int resolutions at the pair's aspect ratio), ``coarse_levels`` /
``upsample_levels`` (levels of each pass, e.g. [16, 8, 4] and [4, 2, 1]), ``cycle_px`` (forward-backward check
in warp pixels; None = variant default, 0 = off), ``normalize``, ``num_samples``, ``sample_thresh``, ``cache_size`` (images whose encoder features are kept,
keyed by image name), ``seed`` (sampling), ``pair_batch``, ``warp_cache`` (HDF5 file keeping each named pair's
dense warp, so several SfM configurations of one scene run the network once per pair; speed only).

``match_pair(image0, image1, name0, name1)`` takes RGB uint8 (H, W, 3) and returns the threshold-balanced
samples of the symmetric warp in pixels of the ORIGINAL images, hloc convention (top-left pixel centre
(0, 0)), scores = certainty (1 above sample_thresh).

``anchor(image0, image1, kps0, kps1, name0, name1, radius_px, min_certainty)`` matches given keypoints (pixels of
the original images) mutually through both warp directions (``l2m.models.sampling.anchor_matches``).

``identity(name, conf)`` (used through ``l2m_sfm.matchers.matcher_identity`` by the result caches): the
variant, its effective inference conf and the SHA-1 of the weight files, without building the model.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Mapping

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
    "keep_aspect": None,
    "coarse_levels": None,
    "upsample_levels": None,
    "normalize": None,
    "num_samples": None,
    "sample_thresh": None,
    "cache_size": 16,
    "seed": 0,
    "pair_batch": None,
    "cycle_px": None,
    "warp_cache": None,
}


# conf keys that change speed / memory only, never the matches
_SPEED_KEYS = ("cache_size", "pair_batch", "warp_cache")
_SHA1: dict[tuple[str, int, int, int], str] = {}  # (resolved path, inode, size, mtime_ns) -> content sha1


def resolve_conf(variant: str, conf: Mapping[str, Any] | None) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(merged matcher conf, variant, model conf for ``build_model``) of a registered name + user conf.

    Model conf: keys left None take the variant default; ``upsample_res`` / ``cycle_px`` = 0 switch them off.
    """
    merged = merge_conf(default_conf, conf, f"matcher.{variant}")
    return merged, merged["variant"] or variant, model_conf_of(merged)


def model_conf_of(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The L2M model conf of a matcher conf: keys absent or None keep the variant default, and
    ``upsample_res`` / ``cycle_px`` = 0 switch them off (shared by the PairMatcher and the hloc model)."""
    keys = ("coarse_res", "keep_aspect", "coarse_levels", "upsample_levels", "normalize", "num_samples",
            "sample_thresh", "cache_size", "pair_batch")
    model_conf = {k: conf[k] for k in keys if conf.get(k) is not None}
    for key in ("upsample_res", "cycle_px"):  # None: variant default; 0: off
        if conf.get(key) is not None:
            model_conf[key] = conf[key] or None
    return model_conf


def file_sha1(path: Path) -> str:
    """SHA-1 of a file's content, computed once per process per (path, inode, size, mtime)."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SHA1:
        h = hashlib.sha1()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA1[key] = h.hexdigest()
    return _SHA1[key]


def _file_identity(path: Path | str | None) -> dict[str, str] | str | None:
    return path if path is None or path == "random" else {"name": Path(path).name, "sha1": file_sha1(Path(path))}


def identity(name: str, conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """What decides the matches beyond the user conf: variant, effective inference conf, weight file hashes.

    Files are found by ``l2m.models.zoo.weight_files``, as ``build_model`` finds them (a missing one raises
    its MissingCheckpointError); the model is not built.
    """
    from l2m.models.zoo import resolve_variant, weight_files

    merged, variant, model_conf = resolve_conf(name, conf)
    _, defaults = resolve_variant(variant)
    effective = {k: val for k, val in {**defaults, **model_conf}.items() if k not in _SPEED_KEYS}
    matcher_file, coarse_file = weight_files(variant, merged["weights"], merged["coarse_weights"])
    return {"variant": variant, "model_conf": effective, "seed": merged["seed"],
            "weights": _file_identity(matcher_file), "coarse_weights": _file_identity(coarse_file)}


class L2MPairMatcher:
    """Dense L2M matcher behind the project's PairMatcher protocol."""

    dense = True

    def __init__(self, variant: str, conf: dict | None = None, device: str = "cpu") -> None:
        from l2m.models.zoo import build_model

        self.conf, variant, model_conf = resolve_conf(variant, conf)
        self.name = variant
        self.model = build_model(variant, weights=self.conf["weights"], coarse_weights=self.conf["coarse_weights"],
                                 device=device, conf=model_conf)

    def dense(self, image0: np.ndarray, image1: np.ndarray, name0: str | None = None, name1: str | None = None):
        """The model's symmetric MatchOutput of a pair, read from / written to ``warp_cache`` when named."""
        from l2m_sfm.warp_cache import WarpCache

        cache = WarpCache(self.conf["warp_cache"]) if self.conf["warp_cache"] and name0 and name1 else None
        out = cache.get(name0, name1) if cache is not None else None
        if out is None:
            start = time.perf_counter()
            out = self.model.match(image0, image1, name0, name1)
            if cache is not None:
                cache.put(name0, name1, out, time.perf_counter() - start)
        return out

    def match_pair(self, image0: np.ndarray, image1: np.ndarray,
                   name0: str | None = None, name1: str | None = None) -> PairMatches:
        """Dense match + balanced sampling -> pixels (hloc convention) of the given images."""
        out = self.dense(image0, image1, name0, name1)
        gen = torch.Generator().manual_seed(int(self.conf["seed"]))
        matches, cert = self.model.sample(out, generator=gen)
        k0, k1 = self.model.to_pixel_coordinates(matches.cpu(), image0.shape[0], image0.shape[1],
                                                 image1.shape[0], image1.shape[1], hloc=True)
        return PairMatches(k0.numpy().astype(np.float32), k1.numpy().astype(np.float32),
                           cert.cpu().numpy().astype(np.float32))

    def anchor(self, image0: np.ndarray, image1: np.ndarray, kps0: np.ndarray, kps1: np.ndarray,
               name0: str | None = None, name1: str | None = None, radius_px: float = 2.0,
               min_certainty: float = 0.05, agree: tuple[np.ndarray, np.ndarray] | None = None,
               agree_radius_px: float = 4.0) -> dict[str, Any]:
        """Anchored matches of keypoints `kps0` / `kps1` ((N, 2) px of the given images, hloc convention).

        Returns {"matches": (M, 2) int64 index pairs, "scores": (M,) certainty, "certain_area": the smaller of the
        two warp halves' shares of pixels with certainty > min_certainty, "agreement": how many of the detector
        matches `agree` = (ids0, ids1) the warp maps within `agree_radius_px` (warp pixels), or -1}.
        """
        from l2m.models.sampling import anchor_matches, to_normalized_coordinates, warp_agreement

        out = self.dense(image0, image1, name0, name1)
        (h0, w0), (h1, w1) = image0.shape[:2], image1.shape[:2]
        x0 = to_normalized_coordinates(torch.from_numpy(np.asarray(kps0, np.float32)).reshape(-1, 2), h0, w0, True)
        x1 = to_normalized_coordinates(torch.from_numpy(np.asarray(kps1, np.float32)).reshape(-1, 2), h1, w1, True)
        ia, ib, score = anchor_matches(x0, x1, out.warp, out.certainty, radius_px, min_certainty)
        w = out.certainty.shape[1] // 2
        certain = out.certainty > min_certainty
        area = min(float(certain[:, :w].float().mean()), float(certain[:, w:].float().mean()))
        agreement = -1
        if agree is not None:
            i0, i1 = (torch.from_numpy(np.asarray(a, np.int64)) for a in agree)
            agreement = int(warp_agreement(x0[i0], x1[i1], out.warp, out.certainty, agree_radius_px,
                                           min_certainty).sum())
        return {"matches": torch.stack((ia, ib), 1).cpu().numpy().astype(np.int64),
                "scores": score.cpu().numpy().astype(np.float32), "certain_area": area, "agreement": agreement}


def build_l2m_tiny(conf: dict, device: str = "cpu") -> L2MPairMatcher:
    """CPU variant (XFeat backbone + tiny decoder)."""
    return L2MPairMatcher("l2m-tiny", conf, device)


def build_l2m_tiny_fast(conf: dict, device: str = "cpu") -> L2MPairMatcher:
    """l2m-tiny with the ``l2m-tiny-fast`` inference preset (l2m.models.zoo.PRESETS)."""
    return L2MPairMatcher("l2m-tiny-fast", conf, device)


def build_l2m_vitb(conf: dict, device: str = "cpu") -> L2MPairMatcher:
    """L2M ICCV 3D-aware ViT-B/14 coarse encoder + full decoder."""
    return L2MPairMatcher("l2m-vitb", conf, device)


def build_l2m_pp(conf: dict, device: str = "cpu") -> L2MPairMatcher:
    """Official L2M++ (ViT-L/14 + RoMa-outdoor decoder) checkpoints."""
    return L2MPairMatcher("l2m++", conf, device)
