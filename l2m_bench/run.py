"""The two-view benchmark loop shared by pipelines/megadepth1500.py, scannet1500.py and scene_benchmark.py.

Two separate steps (glue-factory habit): `match_to_cache` runs a matcher on the pairs that are not cached
yet; `evaluate_cache` estimates poses from the cache only, so a new protocol never re-matches. Each pair is
evaluated with its own RNG seeded by (seed, pair key), so results do not depend on --limit or on order.
"""
from __future__ import annotations

import copy
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import cv2
import numpy as np

from l2m.data.benchmark_pairs import BenchPair
from l2m_bench.files import CachedMatches, PredictionCache, package_versions, write_json
from l2m.evaluation.metrics import pose_auc
from l2m_sfm.shards import Shards
from l2m.evaluation.relpose import (Protocol, K_colmap_to_hloc, evaluate_pose_trials, rescale_K, rescale_keypoints,
                             resized_size, select_matches, threshold_frame_size)

K_CONVENTION = ("index-file/COLMAP intrinsics have pixel centres at +0.5; the harness subtracts 0.5 from "
                "(cx, cy) and works in the hloc convention (top-left pixel centre at (0, 0)) of the threshold frame")
THRESHOLDS = (5, 10, 20)


def read_resized(path: Path, rule: str) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """(RGB uint8 image resized by `rule`, original (w, h), resized (w, h)); INTER_AREA when shrinking."""
    from l2m.images import read_image

    image = read_image(Path(path))
    h, w = image.shape[:2]
    size = resized_size(w, h, rule)
    if size != (w, h):
        interp = cv2.INTER_AREA if size[0] * size[1] < w * h else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interp)
    return image, (w, h), size


def match_to_cache(matcher_factory: Callable[[], Any], pairs: list[BenchPair], image_paths: Mapping[str, Path],
                   resize: str, cache: PredictionCache, progress: bool = True, shards: Shards | None = None) -> int:
    """Match every pair missing from `cache` (the matcher is built only if needed); returns how many ran.

    Under torchrun (`shards`) each rank matches its block of the missing pairs into its own shard of the cache
    file and rank 0 merges them (l2m_sfm.shards); the count returned is over all ranks.
    """
    sh = shards or Shards()
    main_path = cache.path
    sh.merge(main_path)  # shards left by a killed run
    todo = cache.missing([(p.name0, p.name1) for p in pairs])
    total = len(todo)
    if not total:
        return 0
    if sh.distributed:
        todo, cache = sh.split(todo), copy.copy(cache)
        cache.path = sh.shard_path(main_path)
    if todo:
        _match_pairs(matcher_factory(), todo, image_paths, resize, cache, progress)
    sh.merge(main_path)
    return total


def _match_pairs(matcher: Any, todo: list[tuple[str, str]], image_paths: Mapping[str, Path], resize: str,
                 cache: PredictionCache, progress: bool) -> None:
    t_start = time.time()
    for k, (n0, n1) in enumerate(todo, 1):
        im0, orig0, in0 = read_resized(image_paths[n0], resize)
        im1, orig1, in1 = read_resized(image_paths[n1], resize)
        t0 = time.perf_counter()
        try:
            m = matcher.match_pair(im0, im1, n0, n1)
        except Exception as e:
            raise RuntimeError(f"Matcher {getattr(matcher, 'name', '?')} failed on pair ({n0}, {n1}): {e}") from e
        seconds = time.perf_counter() - t0
        cache.write(n0, n1, m.keypoints0, m.keypoints1, m.scores, in0, in1, orig0, orig1, seconds)
        if progress:
            eta = (time.time() - t_start) / k * (len(todo) - k)
            print(f"\r  [{cache.meta['matcher']}] matched {k}/{len(todo)} ({len(m)} matches, {seconds:.2f} s, "
                  f"eta {eta:.0f} s)   ", end="", flush=True)
    if progress:
        print()


def intrinsics_at(K: np.ndarray, K_size: tuple[int, int] | None, size: tuple[int, int]) -> np.ndarray:
    """A ground-truth K (COLMAP convention, for an image of K_size = (w, h)) in hloc convention at `size`."""
    K = K_colmap_to_hloc(K)
    if K_size is not None and tuple(K_size) != tuple(size):  # e.g. ScanNet K at 640x480, images at 1296x968
        K = rescale_K(K, K_size, size)
    return K


def pair_in_frame(pair: BenchPair, cached: CachedMatches, protocol: Protocol
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(kpts0, kpts1, K0, K1) in the protocol's threshold frame, hloc convention."""
    out = []
    for kpts, K, K_size, orig, inp in ((cached.keypoints0, pair.K0, pair.K_size0, cached.original_size0,
                                        cached.input_size0),
                                       (cached.keypoints1, pair.K1, pair.K_size1, cached.original_size1,
                                        cached.input_size1)):
        K = intrinsics_at(K, K_size, orig)
        frame = threshold_frame_size(protocol, orig, inp)
        out.append((rescale_keypoints(kpts, inp, frame), rescale_K(K, orig, frame)))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def pair_rng(seed: int, name0: str, name1: str) -> np.random.Generator:
    """Deterministic per-pair generator, independent of the pair order and of --limit."""
    return np.random.default_rng([seed, zlib.crc32(f"{name0}\n{name1}".encode())])


def evaluate_cache(pairs: list[BenchPair], cache: PredictionCache, protocol: Protocol, seed: int = 0
                   ) -> list[dict[str, Any]]:
    """Per-pair records (errors per trial in degrees, matches, inliers) from the cache only."""
    records = []
    for index, pair in enumerate(pairs):
        cached = cache.read(pair.name0, pair.name1)
        k0, k1, K0, K1 = pair_in_frame(pair, cached, protocol)
        k0, k1 = select_matches(k0, k1, cached.scores, protocol)
        trials = evaluate_pose_trials(k0, k1, K0, K1, pair.T_0to1, protocol, pair_rng(seed, pair.name0, pair.name1))
        errors = [t["error"] for t in trials]
        records.append({"index": index, "name0": pair.name0, "name1": pair.name1,
                        "num_matches_raw": int(len(cached.keypoints0)), "num_matches": int(len(k0)),
                        "num_inliers": int(np.median([t["num_inliers"] for t in trials])),
                        "error": float(np.median(errors)), "failures": int(sum(not t["success"] for t in trials)),
                        "seconds": cached.seconds, "trials": trials, "info": pair.info})
    return records


@dataclass
class Summary:
    """The numbers of one (matcher, protocol) run; AUCs in [0, 1]."""

    auc: list[float]
    mAA: float
    num_pairs: int
    num_samples: int
    failures: int
    median_matches: float
    median_inliers: float
    seconds_per_pair: float


def summarize(records: list[dict[str, Any]]) -> Summary:
    """AUC@5/10/20 over every trial sample (failures included), mAA, failures, medians, matching time."""
    errors = [t["error"] for r in records for t in r["trials"]]
    auc = pose_auc(errors, THRESHOLDS)
    return Summary(auc=auc, mAA=float(np.mean(auc)), num_pairs=len(records), num_samples=len(errors),
                   failures=int(sum(r["failures"] for r in records)),
                   median_matches=float(np.median([r["num_matches"] for r in records])) if records else 0.0,
                   median_inliers=float(np.median([r["num_inliers"] for r in records])) if records else 0.0,
                   seconds_per_pair=float(np.mean([r["seconds"] for r in records])) if records else math.nan)


def summary_record(summary: Summary, *, benchmark: str, matcher: str, matcher_conf: Mapping[str, Any],
                   protocol: Protocol, seed: int, cache: PredictionCache, extra: Mapping[str, Any] | None = None
                   ) -> dict[str, Any]:
    """The summary JSON: numbers next to the full protocol, matcher config, seed and package versions."""
    return {"benchmark": benchmark, "matcher": matcher, "matcher_conf": dict(matcher_conf),
            "protocol": protocol.to_dict(), "seed": seed, "K_convention": K_CONVENTION,
            "metrics": {"auc@5": summary.auc[0], "auc@10": summary.auc[1], "auc@20": summary.auc[2],
                        "mAA": summary.mAA, "auc_definition": "SuperGlue AUC over all trial samples, "
                        "failures kept with error = protocol.failure_error (spec §2.2); mAA = mean(AUC@5,10,20)"},
            "num_pairs": summary.num_pairs, "num_samples": summary.num_samples, "failures": summary.failures,
            "median_matches": summary.median_matches, "median_inliers": summary.median_inliers,
            "seconds_per_pair": summary.seconds_per_pair, "prediction_cache": str(cache.path),
            "versions": package_versions(), **dict(extra or {})}


def format_table(rows: list[dict[str, Any]], title: str = "") -> str:
    """Plain-text table of summary records (AUC in %)."""
    head = f"{'matcher':<22} {'AUC@5':>6} {'AUC@10':>6} {'AUC@20':>6} {'mAA':>6} {'fail':>5} {'matches':>8} " \
           f"{'inliers':>8} {'s/pair':>7}"
    lines = [title, head, "-" * len(head)] if title else [head, "-" * len(head)]
    for r in rows:
        m = r["metrics"]
        lines.append(f"{r['matcher']:<22} {100 * m['auc@5']:6.1f} {100 * m['auc@10']:6.1f} {100 * m['auc@20']:6.1f} "
                     f"{100 * m['mAA']:6.1f} {r['failures']:5d} {r['median_matches']:8.0f} "
                     f"{r['median_inliers']:8.0f} {r['seconds_per_pair']:7.2f}")
    return "\n".join(lines)


def protocol_line(protocol: Protocol, seed: int) -> str:
    """One line naming every protocol choice, printed under each table."""
    p = protocol
    return (f"protocol {p.name} ({p.dataset}): resize {p.resize}, max matches {p.max_matches}, {p.estimator}"
            f"{'/' + p.opencv_method if p.estimator == 'opencv' else ''} thr {p.threshold} px in the "
            f"{p.threshold_frame} frame, conf {p.confidence}, max iters {p.max_iterations}, trials {p.trials}"
            f"{' (shuffled)' if p.shuffle else ''}, failure = {p.failure_error} deg, min matches {p.min_matches}, "
            f"seed {seed}")


def write_results(out_dir: Path, records: list[dict[str, Any]], summary: dict[str, Any]) -> tuple[Path, Path]:
    """pairs.json + summary.json of one (matcher, protocol) run, written atomically."""
    pairs_path = write_json({"protocol": summary["protocol"], "matcher": summary["matcher"], "seed": summary["seed"],
                             "pairs": records}, Path(out_dir) / "pairs.json")
    return pairs_path, write_json(summary, Path(out_dir) / "summary.json")
