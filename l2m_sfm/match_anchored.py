"""Keypoint-anchored dense SfM path: a dense matcher matches a detector's keypoints, so tracks need no quantisation.

1. Detection, once per image: the anchor detector's keypoints (+ descriptors) go to features.h5
   (`l2m_sfm.match_features.extract_features`; resumable per image).
2. Detector matches per pair (SIFT rule, or LightGlue for ALIKED / DISK / XFeat) go to
   `<matches stem>-<detector>.h5` when `combine=union` (the default) or the pair gate needs them
   (`gate.min_agreement > 0`).
3. Dense matches per pair: the matcher's symmetric warp maps A's keypoints into B and B's into A; (i, j) is kept
   when each is the other's nearest keypoint after warping, within `radius_px` pixels of the matcher's working
   resolution, with certainty above `min_certainty` (`l2m.models.sampling.anchor_matches`). Ungated results go to
   `<matches stem>-anchored.h5` with each pair's gate signals (resumable per pair).
4. Pair gate: a pair's dense matches are dropped unless the warp supports real overlap: at least
   `gate.min_agreement` of the detector's own matches land within `gate.agree_radius_px` of where the warp maps
   them, and at least `gate.min_area` of each image's warp grid is certain. A dense matcher gives confident,
   self-consistent matches between views that do not overlap; a detector's matches agree with such a warp only
   by chance.
5. matches.h5 (rewritten every run, cheap): with `combine=union` (default) the detector matches plus the gated dense
   ones; with `combine=none` the gated dense matches alone. Duplicates (same keypoint pair) are merged; a dense
   match whose keypoint already has a different detector partner is dropped (hloc's matches0 holds one partner per
   keypoint), and counted.

    python -m l2m_sfm.match_dense --images DIR --pairs pairs.txt --features features.h5 --matches matches.h5 \\
        --matcher l2m-tiny anchors=sift [combine=none radius_px=2 ...]
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from l2m.config import ConfigError, merge_conf
from l2m_sfm import h5io
from l2m.images import ImageReader
from l2m_sfm.pairs import parse_pairs

# anchor name -> the registered sparse matcher that detects (and, for union / gating, matches) its keypoints
ANCHORS: dict[str, str] = {"sift": "sift", "aliked": "aliked+lightglue", "disk": "disk+lightglue",
                           "xfeat": "xfeat+lighterglue"}
COMBINE = ("none", "union")

default_conf: dict[str, Any] = {
    "anchors": "sift",      # detector whose keypoints anchor the dense matches (ANCHORS)
    "anchor_conf": {},      # conf of that detector's matcher (max_keypoints, resize_max, ...)
    # "union": the detector's matches plus the gated dense ones; "none": dense matches only. Union is the default
    # because it never drops a pair the detector verifies: where a weak warp is gated out or misses a pair, dense-only
    # loses that pair (benchmarks/anchors.py: an image unregistered on bundler_kermit, three images turned ~80 deg on
    # sacre_coeur), and union was at least as accurate as dense-only on every GT scene of the table (README)
    "combine": "union",
    "radius_px": 2.0,       # mutual-NN radius, pixels of the dense matcher's working resolution
    "min_certainty": 0.05,  # warp certainty needed at both keypoints
    # pair gate (see module docstring); min_agreement 0 and min_area 0 switch it off
    "gate": {"min_agreement": 8, "agree_radius_px": 4.0, "min_area": 0.0},
}


def resolve_conf(conf: dict[str, Any] | None) -> dict[str, Any]:
    """Merge `conf` into the defaults and check the names."""
    conf = merge_conf(default_conf, conf, "matching")
    if conf["anchors"] not in ANCHORS:
        raise ConfigError(f"matching.anchors={conf['anchors']!r}: use one of {', '.join(ANCHORS)}")
    if conf["combine"] not in COMBINE:
        raise ConfigError(f"matching.combine={conf['combine']!r}: use one of {', '.join(COMBINE)}")
    if conf["radius_px"] <= 0:
        raise ConfigError("matching.radius_px must be > 0 (pixels of the matcher's working resolution)")
    return conf


def needs_detector_matches(conf: dict[str, Any]) -> bool:
    return conf["combine"] == "union" or conf["gate"]["min_agreement"] > 0


def gate_passes(signals: dict[str, float], gate: dict[str, Any]) -> bool:
    """True when a pair's signals (agreement, certain_area) show real overlap under `gate`."""
    return signals["agreement"] >= gate["min_agreement"] and signals["certain_area"] >= gate["min_area"]


def union_matches(sparse: np.ndarray, sparse_scores: np.ndarray, dense: np.ndarray, dense_scores: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    """(M,2) detector matches + (K,2) dense matches -> one-to-one union, scores, number of dense conflicts.

    Every detector match is kept; a dense match equal to one is merged (higher score); a dense match sharing a
    keypoint with a different partner is dropped and counted as a conflict.
    """
    sparse = np.asarray(sparse, np.int64).reshape(-1, 2)
    dense = np.asarray(dense, np.int64).reshape(-1, 2)
    scores = dict(zip(map(tuple, sparse.tolist()), np.asarray(sparse_scores, np.float32).tolist()))
    used0, used1 = set(sparse[:, 0].tolist()), set(sparse[:, 1].tolist())
    conflicts = 0
    for (i, j), s in zip(dense.tolist(), np.asarray(dense_scores, np.float32).tolist()):
        if (i, j) in scores:
            scores[(i, j)] = max(scores[(i, j)], s)
        elif i in used0 or j in used1:
            conflicts += 1
        else:
            scores[(i, j)] = s
            used0.add(i)
            used1.add(j)
    pairs = np.array(list(scores), np.int64).reshape(-1, 2)
    return pairs, np.array(list(scores.values()), np.float32), conflicts


def _signature(conf: dict[str, Any], matcher_name: str) -> str:
    keys = ("anchors", "anchor_conf", "radius_px", "min_certainty")
    text = json.dumps({"matcher": matcher_name, **{k: conf[k] for k in keys},
                       "agree_radius_px": conf["gate"]["agree_radius_px"]}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


def anchored_path(matches_path: Path) -> Path:
    """Where the ungated anchored matches and gate signals of `matches_path` are kept."""
    return Path(matches_path).with_name(Path(matches_path).stem + "-anchored.h5")


def detector_matches_path(matches_path: Path, anchors: str) -> Path:
    """Where the anchor detector's own matches are kept beside `matches_path`."""
    return Path(matches_path).with_name(f"{Path(matches_path).stem}-{anchors}.h5")


def write_anchored(path: Path, name0: str, name1: str, matches: np.ndarray, scores: np.ndarray,
                   num0: int, signals: dict[str, float]) -> None:
    """One pair's ungated anchored matches (hloc matches0 layout) with its gate signals as attributes."""
    m0, s0 = h5io.matches_to_matches0(matches, scores, num0)
    with h5io._write_group(path, h5io.names_to_pair(name0, name1)) as g:  # complete only with its signals
        g.create_dataset("matches0", data=m0.astype(np.int32))
        g.create_dataset("matching_scores0", data=s0.astype(np.float16))
        for k, v in signals.items():
            g.attrs[k] = v


def read_signals(path: Path, name0: str, name1: str) -> dict[str, float]:
    """Gate signals (agreement, certain_area, num_detector_matches) of a pair of an anchored file."""
    with h5py.File(path, "r") as f:
        key, _ = h5io.find_pair(f, name0, name1)
        return {k: float(v) for k, v in f[key].attrs.items() if k != h5io.COMPLETE}


def main(conf: dict[str, Any], matcher, image_dir: Path, image_names: list[str], pairs_path: Path,
         features_path: Path, matches_path: Path, overwrite: bool = False, progress: bool = True
         ) -> dict[str, Any]:
    """Anchored dense matching of the pairs of `pairs_path` into features.h5 / matches.h5 (see module doc)."""
    from l2m_sfm import match_features
    from l2m_sfm.matchers import get_matcher

    conf = resolve_conf(conf)
    image_dir, features_path, matches_path = Path(image_dir), Path(features_path), Path(matches_path)
    dense_path = anchored_path(matches_path)
    sparse_path = detector_matches_path(matches_path, conf["anchors"])
    pairs = parse_pairs(pairs_path, image_names)
    if overwrite:
        for p in (features_path, matches_path, dense_path, sparse_path):
            p.unlink(missing_ok=True)
    detector = get_matcher(ANCHORS[conf["anchors"]], conf["anchor_conf"], getattr(matcher, "device", "cpu"))
    stats: dict[str, Any] = {"anchors": conf["anchors"], "combine": conf["combine"]}
    if needs_detector_matches(conf):
        st = match_features.main({"matcher": detector}, image_dir, image_names, pairs_path, features_path,
                                 sparse_path, progress=progress)
        stats["images_extracted"], stats["detector_pairs_computed"] = st["images_extracted"], st["pairs_computed"]
    else:
        h5io.remove_incomplete(features_path)
        stats["images_extracted"] = len(match_features.extract_features(detector, image_dir, image_names,
                                                                        features_path, progress))
    h5io.remove_incomplete(dense_path)
    sig = _signature(conf, matcher.name)
    with h5py.File(dense_path, "a", libver="earliest") as f:
        old = f.attrs.setdefault("anchoring", sig)
        if str(old) != sig:
            raise ConfigError(f"{dense_path} holds anchored matches made with other settings; use another output "
                              "folder or --overwrite")
        todo = [p for p in sorted(pairs) if not h5io.has_pair(f, *p)]
    image = ImageReader(image_dir)

    for n0, n1 in tqdm(todo, desc=f"match {matcher.name} anchored on {conf['anchors']}", unit="pair",
                       disable=not progress):
        k0, k1 = h5io.read_keypoints(features_path, n0), h5io.read_keypoints(features_path, n1)
        agree = None
        if needs_detector_matches(conf):
            m, _ = h5io.read_matches(sparse_path, n0, n1)
            agree = (m[:, 0], m[:, 1])
        out = matcher.anchor(image(n0), image(n1), k0, k1, n0, n1, conf["radius_px"], conf["min_certainty"],
                             agree, conf["gate"]["agree_radius_px"])
        signals = {"agreement": out["agreement"], "certain_area": out["certain_area"],
                   "num_detector_matches": -1 if agree is None else len(agree[0])}
        write_anchored(dense_path, n0, n1, out["matches"], out["scores"], len(k0), signals)
    stats.update(pairs_total=len(pairs), pairs_computed=len(todo), pairs_reused=len(pairs) - len(todo))
    stats.update(combine_matches(conf, pairs, features_path, dense_path, sparse_path, matches_path))
    return stats


def combine_matches(conf: dict[str, Any], pairs: list[tuple[str, str]], features_path: Path, dense_path: Path,
                    sparse_path: Path, matches_path: Path) -> dict[str, Any]:
    """Gate the anchored matches and (combine=union) add the detector's: matches.h5, written atomically."""
    tmp = matches_path.with_name(matches_path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    counts = {"pairs_gated": 0, "dense_matches": 0, "detector_matches": 0, "union_conflicts": 0, "matches": 0}
    gated: list[list[str]] = []
    num_kps: dict[str, int] = {}
    with h5py.File(tmp, "w", libver="earliest") as out:
        for n0, n1 in sorted(pairs):
            dense, dense_scores = h5io.read_matches(dense_path, n0, n1)
            if needs_detector_matches(conf) and not gate_passes(read_signals(dense_path, n0, n1), conf["gate"]):
                counts["pairs_gated"] += 1
                gated.append([n0, n1])
                dense, dense_scores = dense[:0], dense_scores[:0]
            counts["dense_matches"] += len(dense)
            if conf["combine"] == "union":
                sparse, sparse_scores = h5io.read_matches(sparse_path, n0, n1)
                counts["detector_matches"] += len(sparse)
                dense, dense_scores, conflicts = union_matches(sparse, sparse_scores, dense, dense_scores)
                counts["union_conflicts"] += conflicts
            if n0 not in num_kps:
                num_kps[n0] = len(h5io.read_keypoints(features_path, n0))
            m0, s0 = h5io.matches_to_matches0(dense, dense_scores, num_kps[n0])
            h5io.write_matches(out, n0, n1, m0, s0)
            counts["matches"] += len(dense)
    os.replace(tmp, matches_path)
    return {**counts, "gated_pairs": gated, "matches_rewritten": True}  # so the database is built again
