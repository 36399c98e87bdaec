"""Dense SfM path: run a dense matcher per pair, then quantise the raw matches into shared per-image keypoints.

1. Matching: `matcher.match_pair` on every pair (ordered so each image's pairs are consecutive, which lets a
   matcher's per-image feature cache hit). Raw correspondences go to `<matches stem>-raw.h5` (hloc raw
   layout: keypoints0/keypoints1/scores), one complete group per pair: a rerun, even after `kill -9`,
   computes only the missing pairs.
2. Quantisation (hloc `match_dense` semantics, spec A6): a raw keypoint k votes with its score into
   cell round((k+0.5)/ps) with ps = max(cell_size, max_error), inside a fine histogram of step max_error
   (bin centre round((k+0.5)/max_error)*max_error - 0.5). Each cell becomes one keypoint at its most-voted
   fine bin, score = that vote. With max_kps > 0 only the top max_kps keypoints (by score) of an image are
   kept and every raw keypoint is re-assigned to the nearest kept keypoint within max_error (else dropped);
   with max_kps = 0 a raw keypoint takes its cell's keypoint. Per pair, one-to-one is enforced by keeping
   the best-scored match of each keypoint id on side 0, then on side 1. Keypoints are therefore shared by
   every pair of an image, so matches chain into tracks.
   One addition to hloc (conf `nms`, on by default): a keypoint with a stronger keypoint in one of the 8
   adjacent fine bins is dropped before the top-k, and raw keypoints are then always assigned to the
   nearest kept keypoint within max_error. Matcher noise otherwise splits a point lying on a cell border
   into two keypoints of one image, which breaks its track. Synthetic test (4 views, 0.3 px noise, points
   >= 12 px apart), share of tracks with at most one keypoint per image, fast/default/accurate:
   hloc rule 0.91/0.88/0.68, with nms 1.00/1.00/0.96. `nms=False, max_kps=0` is hloc's exact behaviour
   (raw keypoints take their cell's keypoint).
   Writes features.h5 (`keypoints` float32, `score`, `image_size`) and matches.h5 (`matches0` int32,
   `matching_scores0`), each atomically (temp file, then rename). Skipped when both exist and were made from
   the same pairs with the same quantisation settings.

Presets (`confs`, pick with conf["preset"]; cell_size / max_error / max_kps override them):
  fast      cell 8, max_error 2, max_kps 4096: few, well-spread keypoints (hloc's loftr_aachen); fastest
            COLMAP import and mapping, keypoints snapped to a 2-px grid, tracks merge readily.
  default   cell 4, max_error 2, max_kps 8192: twice the linear density of `fast`; same 2-px snapping
            (<= 1 px per axis from the raw match); the usual choice for scenes of tens to hundreds of images.
  accurate  cell 1, max_error 1, max_kps 16384: 1-px grid (<= 0.5 px per axis), many keypoints; small scenes,
            and only for matchers whose noise is well below 0.5 px (at 0.3 px: 93 % of the keypoints
            within 1 px of the truth, 88 % of raw matches kept, against 100 % for fast/default).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from l2m.config import ConfigError, merge_conf, parse_overrides
from l2m_sfm import h5io
from l2m.images import ImageReader, image_size
from l2m_sfm.pairs import parse_pairs
from l2m_sfm.shards import Shards, shard_files

confs: dict[str, dict[str, Any]] = {
    "fast": {"cell_size": 8, "max_error": 2, "max_kps": 4096},
    "default": {"cell_size": 4, "max_error": 2, "max_kps": 8192},
    "accurate": {"cell_size": 1, "max_error": 1, "max_kps": 16384},
}

default_conf: dict[str, Any] = {
    "preset": "default",
    "cell_size": None,   # px, None = from the preset
    "max_error": None,   # px, None = from the preset
    "max_kps": None,     # keypoints kept per image; None = from the preset, 0 = no limit
    "min_score": 0.0,    # raw matches with a score below this are ignored
    "nms": True,         # drop a keypoint with a stronger one within max_error (not in hloc; keeps tracks whole)
}

_BITS = 15  # per packed index: image sides up to 32767 * step px
_MASK = (1 << _BITS) - 1


def resolve_conf(conf: dict[str, Any] | None) -> dict[str, Any]:
    """Merge `conf` into the defaults and fill cell_size / max_error / max_kps from the preset."""
    conf = merge_conf(default_conf, conf, "match_dense")
    if conf["preset"] not in confs:
        raise ConfigError(f"Unknown match_dense preset {conf['preset']!r}; use one of {', '.join(confs)}")
    for key, value in confs[conf["preset"]].items():
        if conf[key] is None:
            conf[key] = value
    if conf["max_error"] <= 0 or conf["cell_size"] < 0:
        raise ConfigError("match_dense needs max_error > 0 and cell_size >= 0 (px)")
    return conf


def snap(k: np.ndarray, step: float) -> np.ndarray:
    """hloc cell snapping in hloc pixel convention: round(round((k+0.5)/step)*step - 0.5, 2)."""
    return np.round(np.round((np.asarray(k, np.float64) + 0.5) / step) * step - 0.5, 2)


def _index(k: np.ndarray, step: float) -> np.ndarray:
    return np.round((np.asarray(k, np.float64) + 0.5) / step).astype(np.int64) + 1  # +1: room for -0.5


def _pack2(ix: np.ndarray) -> np.ndarray:
    return (ix[:, 0] << _BITS) | ix[:, 1]


class Quantizer:
    """Accumulate raw matches pair by pair into per-image vote histograms, then build shared keypoints."""

    def __init__(self, cell_size: float, max_error: float, max_kps: int | None, nms: bool = True):
        self.nms = bool(nms)
        self.ps = float(max(cell_size, max_error))
        self.me = float(max_error)
        self.max_kps = int(max_kps or 0)
        self._keys: dict[str, list[np.ndarray]] = defaultdict(list)
        self._votes: dict[str, list[np.ndarray]] = defaultdict(list)
        self._pending: dict[str, int] = defaultdict(int)
        self.keypoints: dict[str, np.ndarray] = {}
        self.scores: dict[str, np.ndarray] = {}
        self._lookup: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._cell_to_id: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _keys_of(self, k: np.ndarray) -> np.ndarray:
        cell, fine = _index(k, self.ps), _index(k, self.me)
        if cell.size and (cell.min() < 0 or fine.min() < 0 or fine.max() > _MASK):
            raise ValueError(f"keypoints outside the supported range (0 .. {_MASK * self.me:.0f} px)")
        return (_pack2(cell) << (2 * _BITS)) | _pack2(fine)

    def add(self, name: str, k: np.ndarray, scores: np.ndarray) -> None:
        """Vote with raw keypoints (N,2) px of image `name` weighted by `scores` (N,)."""
        self._keys[name].append(self._keys_of(k))
        self._votes[name].append(np.asarray(scores, np.float64))
        self._pending[name] += len(k)
        if self._pending[name] > 2_000_000:  # bound memory: merge equal bins
            self._compact(name)

    def _compact(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        keys, votes = np.concatenate(self._keys[name]), np.concatenate(self._votes[name])
        uniq, inv = np.unique(keys, return_inverse=True)
        summed = np.bincount(inv, weights=votes, minlength=len(uniq))
        self._keys[name], self._votes[name], self._pending[name] = [uniq], [summed], len(uniq)
        return uniq, summed

    @staticmethod
    def _not_suppressed(fine: np.ndarray, score: np.ndarray) -> np.ndarray:
        """Mask of keypoints with no stronger keypoint within max_error (the 4 adjacent fine bins).

        Noise splits one true point into two adjacent bins of two cells in some pairs; keeping both would
        give the point two keypoints and break its track. Ties go to the earlier keypoint (higher vote first).
        """
        ix = np.stack([fine >> _BITS, fine & _MASK], 1)
        order = np.argsort(fine)
        table = fine[order]
        keep = np.ones(len(fine), bool)
        rank = np.empty(len(fine), np.int64)
        rank[np.argsort(-score, kind="stable")] = np.arange(len(fine))
        for d in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)):
            q = _pack2(ix + d)
            pos = np.clip(np.searchsorted(table, q), 0, max(len(table) - 1, 0))
            hit = table[pos] == q if len(table) else np.zeros(len(q), bool)
            other = order[pos]
            keep &= ~(hit & (rank[other] < rank))
        return keep

    def finalize(self, name: str) -> np.ndarray:
        """Keypoints (K,2) of `name`: the most-voted fine bin of each cell, top max_kps by vote."""
        if name not in self._keys:
            kp, sc, cell_of_kp = np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        else:
            keys, votes = self._compact(name)
            cells = keys >> (2 * _BITS)
            order = np.lexsort((-votes, cells))  # per cell, most votes first
            first = np.ones(len(order), bool)
            first[1:] = cells[order][1:] != cells[order][:-1]
            best = order[first]
            fine, sc, cell_of_kp = keys[best] & ((1 << 2 * _BITS) - 1), votes[best], cells[best]
            # two cells can pick the same fine bin when a bin straddles a cell border: keep one keypoint there
            by_score = np.argsort(-sc, kind="stable")
            _, uniq = np.unique(fine[by_score], return_index=True)
            keep = by_score[np.sort(uniq)]
            if self.nms:
                keep = keep[self._not_suppressed(fine[keep], sc[keep])]
            if self.max_kps and len(keep) > self.max_kps:
                keep = keep[: self.max_kps]
            fine, sc, cell_of_kp = fine[keep], sc[keep], cell_of_kp[keep]
            ix = np.stack([fine >> _BITS, fine & _MASK], 1) - 1
            kp = (ix * self.me - 0.5).astype(np.float32)
        del self._keys[name], self._votes[name]
        self.keypoints[name], self.scores[name] = kp, np.asarray(sc, np.float32)
        fine_keys = _pack2(_index(kp, self.me))
        order = np.argsort(fine_keys)
        self._lookup[name] = (fine_keys[order], order)
        corder = np.argsort(cell_of_kp, kind="stable")
        self._cell_to_id[name] = (cell_of_kp[corder], corder)
        return kp

    def assign(self, name: str, k: np.ndarray) -> np.ndarray:
        """Keypoint id of each raw keypoint (N,2) of `name`, or -1 (nearest within max_error, or by cell)."""
        if not self.max_kps and not self.nms:
            cells, ids = self._cell_to_id[name]
            q = self._keys_of(k) >> (2 * _BITS)
            out = np.full(len(q), -1, np.int64)
            if len(cells):
                pos = np.clip(np.searchsorted(cells, q), 0, len(cells) - 1)
                hit = cells[pos] == q
                out[hit] = ids[pos[hit]]
            return out
        table, ids = self._lookup[name]
        kp = self.keypoints[name]
        centre = _index(k, self.me)
        best_id = np.full(len(k), -1, np.int64)
        best_d = np.full(len(k), np.inf)
        if len(table) == 0:
            return best_id
        for dx in (-1, 0, 1):  # a keypoint within max_error lies in the 3x3 fine bins around k's bin
            for dy in (-1, 0, 1):
                q = _pack2(centre + [dx, dy])
                pos = np.clip(np.searchsorted(table, q), 0, len(table) - 1)
                hit = table[pos] == q
                cand = ids[pos]
                d = np.linalg.norm(kp[cand] - k, axis=1)
                better = hit & (d <= self.me) & (d < best_d)
                best_id[better], best_d[better] = cand[better], d[better]
        return best_id


def one_to_one(ids0: np.ndarray, ids1: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of the matches kept: valid ids, best score per id0, then best score per id1."""
    valid = np.flatnonzero((ids0 >= 0) & (ids1 >= 0))
    order = valid[np.argsort(-scores[valid], kind="stable")]
    _, first0 = np.unique(ids0[order], return_index=True)
    order = order[np.sort(first0)]
    _, first1 = np.unique(ids1[order], return_index=True)
    return order[np.sort(first1)]


def order_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Sort pairs so that all pairs of the same first image are consecutive."""
    return sorted(pairs)


def _inside(k: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return (k[:, 0] >= -0.5) & (k[:, 1] >= -0.5) & (k[:, 0] <= w - 0.5) & (k[:, 1] <= h - 0.5)


def quantize(raw_path: Path, pairs: list[tuple[str, str]], sizes: dict[str, tuple[int, int]],
             conf: dict[str, Any], features_path: Path, matches_path: Path, progress: bool = True
             ) -> dict[str, int]:
    """Raw matches -> shared keypoints (features_path) + matches0 (matches_path), both written atomically."""
    q = Quantizer(conf["cell_size"], conf["max_error"], conf["max_kps"], conf["nms"])
    count = defaultdict(int)
    for n0, n1 in pairs:
        count[n0] += 1
        count[n1] += 1
    # finish images early (hloc habit): pairs of rarely-paired images first
    pairs = sorted(pairs, key=lambda p: (min(count[p[0]], count[p[1]]), p))
    remaining = dict(count)

    def load(n0: str, n1: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k0, k1, s = h5io.read_raw_matches(raw, n0, n1)
        keep = (s >= conf["min_score"]) & _inside(k0, sizes[n0]) & _inside(k1, sizes[n1])
        return k0[keep], k1[keep], s[keep]

    with h5py.File(raw_path, "r") as raw:
        for n0, n1 in tqdm(pairs, desc="quantize: vote", unit="pair", disable=not progress):
            k0, k1, s = load(n0, n1)
            q.add(n0, k0, s)
            q.add(n1, k1, s)
            for n in (n0, n1):
                remaining[n] -= 1
                if remaining[n] == 0:
                    q.finalize(n)
        for n in sizes:
            if n not in q.keypoints:
                q.finalize(n)
        tmp_m = matches_path.with_name(matches_path.name + ".tmp")
        tmp_m.unlink(missing_ok=True)
        stats = {"matches_raw": 0, "matches_kept": 0}
        with h5py.File(tmp_m, "w", libver="earliest") as out:
            for n0, n1 in tqdm(pairs, desc="quantize: assign", unit="pair", disable=not progress):
                k0, k1, s = load(n0, n1)
                ids0, ids1 = q.assign(n0, k0), q.assign(n1, k1)
                keep = one_to_one(ids0, ids1, s)
                m0 = np.full(len(q.keypoints[n0]), -1, np.int64)
                s0 = np.zeros(len(m0), np.float32)
                m0[ids0[keep]], s0[ids0[keep]] = ids1[keep], s[keep]
                h5io.write_matches(out, n0, n1, m0, s0, dense=True)
                stats["matches_raw"] += len(s)
                stats["matches_kept"] += len(keep)
            out.attrs["quantization"] = _signature(conf, pairs)
    tmp_f = features_path.with_name(features_path.name + ".tmp")
    tmp_f.unlink(missing_ok=True)
    with h5py.File(tmp_f, "w", libver="earliest") as f:
        for n in sorted(sizes):
            h5io.write_keypoints(f, n, q.keypoints[n], q.scores[n], image_size=sizes[n], score_name="score")
        f.attrs["quantization"] = _signature(conf, pairs)
    os.replace(tmp_f, features_path)
    os.replace(tmp_m, matches_path)
    stats["keypoints_total"] = int(sum(len(k) for k in q.keypoints.values()))
    return stats


def _signature(conf: dict[str, Any], pairs: list[tuple[str, str]]) -> str:
    keys = ("cell_size", "max_error", "max_kps", "min_score", "nms")
    text = json.dumps({"conf": {k: conf[k] for k in keys}, "pairs": sorted(sorted(p) for p in pairs)})
    return hashlib.sha1(text.encode()).hexdigest()


def _up_to_date(features_path: Path, matches_path: Path, signature: str) -> bool:
    try:
        with h5py.File(features_path, "r") as f, h5py.File(matches_path, "r") as m:
            return f.attrs.get("quantization") == signature and m.attrs.get("quantization") == signature
    except (OSError, FileNotFoundError):
        return False


def raw_matches_path(matches_path: Path) -> Path:
    """Where the raw dense correspondences of `matches_path` are kept: <stem>-raw.h5 beside it."""
    return Path(matches_path).with_name(Path(matches_path).stem + "-raw.h5")


def main(conf: dict[str, Any], matcher, image_dir: Path, image_names: list[str], pairs_path: Path,
         features_path: Path, matches_path: Path, overwrite: bool = False, progress: bool = True,
         shards: Shards | None = None) -> dict[str, int]:
    """Match the pairs of `pairs_path` densely with `matcher`, then quantise into features.h5 / matches.h5.

    `shards` (torchrun, l2m_sfm.shards): each rank matches its block of pairs into its raw shard, rank 0
    merges them and quantises alone; the other ranks return after the merge (stats without quantisation).
    """
    conf = resolve_conf(conf)
    image_dir, features_path, matches_path = Path(image_dir), Path(features_path), Path(matches_path)
    raw_path = raw_matches_path(matches_path)
    pairs = parse_pairs(pairs_path, image_names)
    sh = shards or Shards()
    if sh.is_main:
        if overwrite:
            for p in (features_path, matches_path, raw_path, *shard_files(raw_path)):
                p.unlink(missing_ok=True)
        h5io.remove_incomplete(raw_path)
        with h5py.File(raw_path, "a", libver="earliest") as f:
            old = f.attrs.setdefault("matcher", matcher.name)
    sh.merge(raw_path)  # shards left by a killed run
    with h5py.File(raw_path, "r") as f:
        old = f.attrs["matcher"]
        if str(old) != matcher.name:
            raise ConfigError(f"{raw_path} holds raw matches of {old!r}, not {matcher.name!r}; use another output "
                              "folder or --overwrite")
        todo = [p for p in order_pairs(pairs) if not h5io.has_pair(f, *p, main_dataset="keypoints0")]

    image = ImageReader(image_dir)

    for n0, n1 in tqdm(sh.split(todo), desc=f"match {matcher.name}", unit="pair", disable=not progress):
        pm = matcher.match_pair(image(n0), image(n1), n0, n1)
        h5io.write_raw_matches(sh.shard_path(raw_path), n0, n1, pm.keypoints0, pm.keypoints1, pm.scores)
    sh.merge(raw_path)

    sizes = {n: image_size(image_dir / n) for n in image_names}
    stats: dict[str, Any] = {"pairs_total": len(pairs), "pairs_reused": len(pairs) - len(todo),
                             "pairs_computed": len(todo), "images_extracted": 0, "images_reused": 0}
    if not sh.is_main:
        return stats
    sig = _signature(conf, sorted(pairs))
    if not todo and not overwrite and _up_to_date(features_path, matches_path, sig):
        stats["quantized"] = False
        return stats
    stats.update(quantize(raw_path, sorted(pairs), sizes, conf, features_path, matches_path, progress))
    stats["quantized"] = True
    return stats


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Dense matching + quantisation into hloc HDF5 files.")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--matches", type=Path, required=True)
    parser.add_argument("--matcher", required=True, help="a registered dense matcher name")
    parser.add_argument("--preset", default="default", choices=sorted(confs))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("overrides", nargs="*", help="quantisation conf as key=value (cell_size=4 ...); anchors=sift "
                                                     "(combine=union by default, or none ...) selects keypoint-"
                                                     "anchored matching")
    args = parser.parse_args(argv)
    from l2m.images import list_images
    from l2m_sfm.matchers import get_matcher

    names, _ = list_images(args.images)
    matcher = get_matcher(args.matcher, {}, args.device)
    conf = parse_overrides(args.overrides)
    if "anchors" in conf or "combine" in conf:  # keypoint-anchored mode (l2m_sfm.match_anchored)
        from l2m_sfm import match_anchored

        stats = match_anchored.main(conf, matcher, args.images, names, args.pairs, args.features, args.matches,
                                    overwrite=args.overwrite)
        stats.pop("gated_pairs")
    else:
        stats = main({"preset": args.preset, **conf}, matcher, args.images, names, args.pairs, args.features,
                     args.matches, overwrite=args.overwrite)
    print(" ".join(f"{k}={v}" for k, v in stats.items()))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
