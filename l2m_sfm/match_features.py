"""Sparse SfM path: extract local features once per image into features.h5, match every pair into matches.h5.

Resumable: images already in features.h5 and pairs already in matches.h5 (any order or naming) are reused;
each image / pair is written completely or not at all (l2m_sfm.h5io), so a rerun after a crash, even
`kill -9`, finishes the remaining work only. `overwrite=True` deletes both files first. The matcher's name is
stored in each file (attribute `matcher`); reusing a file made by another matcher is refused.

    python -m l2m_sfm.match_features --images DIR --pairs pairs.txt --features features.h5 \\
        --matches matches.h5 [--matcher sift] [--overwrite] [max_keypoints=4096 ...]
    torchrun --nproc_per_node N -m l2m_sfm.match_features ...     # sharded over N processes (l2m_sfm.shards)
"""
from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import h5py
from tqdm import tqdm

from l2m.config import ConfigError, merge_conf, parse_overrides
from l2m_sfm import h5io
from l2m.images import read_image
from l2m_sfm.pairs import parse_pairs
from l2m_sfm.shards import Shards, shard_files

default_conf: dict[str, Any] = {
    "matcher": "sift",     # a registered sparse matcher name, or a built matcher object (extract + match)
    "matcher_conf": {},    # conf of the matcher factory when `matcher` is a name
    "device": "cpu",
}


def _build_matcher(conf: dict[str, Any]):
    matcher = conf["matcher"]
    if isinstance(matcher, str):
        from l2m_sfm.matchers import get_matcher

        matcher = get_matcher(matcher, conf["matcher_conf"], conf["device"])
    if getattr(matcher, "dense", False) or not (hasattr(matcher, "extract") and hasattr(matcher, "match")):
        raise ConfigError(f"Matcher {getattr(matcher, 'name', matcher)!r} has no per-image extract/match: "
                          "dense matchers go through l2m_sfm.match_dense")
    return matcher


def _claim(path: Path, matcher_name: str, what: str) -> None:
    """Tag a new file with the matcher name; refuse an existing file made by another matcher."""
    with h5py.File(path, "a", libver="earliest") as f:
        old = f.attrs.get("matcher")
        if old is None:
            f.attrs["matcher"] = matcher_name
        elif str(old) != matcher_name:
            raise ConfigError(f"{path} holds {what} of matcher {old!r}, not {matcher_name!r}; use another output "
                              "folder or --overwrite")


def order_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Group pairs by their first image (then the second) so an image's pairs come one after the other."""
    return sorted(pairs, key=lambda p: (p[0], p[1]))


def extract_features(matcher, image_dir: Path, image_names: list[str], features_path: Path,
                     progress: bool = True) -> list[str]:
    """Extract the images missing from features_path (one complete group each); returns the names extracted."""
    todo = h5io.missing_names(features_path, list(image_names))
    for name in tqdm(todo, desc=f"extract {matcher.name}", unit="img", disable=not progress):
        feats = matcher.extract(read_image(Path(image_dir) / name))
        h5io.write_keypoints(features_path, name, feats["keypoints"], feats.get("scores"),
                             feats.get("descriptors"), feats.get("image_size"))
    return todo


def main(conf: dict[str, Any], image_dir: Path, image_names: list[str], pairs_path: Path,
         features_path: Path, matches_path: Path, overwrite: bool = False, progress: bool = True,
         shards: Shards | None = None) -> dict[str, int]:
    """Extract features of `image_names` (relative to image_dir) and match the pairs of `pairs_path`.

    `shards` (torchrun, l2m_sfm.shards): each rank extracts / matches its block into its shard file, rank 0
    merges. Returns counts over all ranks: pairs_total, pairs_reused, pairs_computed, images_extracted,
    images_reused.
    """
    conf = dict(conf or {})
    matcher_obj = conf.pop("matcher", default_conf["matcher"])
    conf = merge_conf({k: v for k, v in default_conf.items() if k != "matcher"}, conf, "match_features")
    conf["matcher"] = matcher_obj
    matcher = _build_matcher(conf)
    image_dir, features_path, matches_path = Path(image_dir), Path(features_path), Path(matches_path)
    pairs = parse_pairs(pairs_path, image_names)
    sh = shards or Shards()
    if sh.is_main:
        for path, what in ((features_path, "features"), (matches_path, "matches")):
            if overwrite:
                for p in [path, *shard_files(path)]:
                    p.unlink(missing_ok=True)
            h5io.remove_incomplete(path)
            _claim(path, matcher.name, what)

    sh.merge(features_path)  # shards left by a killed run
    todo = h5io.missing_names(features_path, list(image_names))
    extract_features(matcher, image_dir, sh.split(todo), sh.shard_path(features_path), progress)
    sh.merge(features_path)
    h5io.require_names(features_path, sorted({n for p in pairs for n in p}))

    sh.merge(matches_path)
    with h5py.File(matches_path, "r") as f:
        new_pairs = [p for p in order_pairs(pairs) if not h5io.has_pair(f, *p)]
    cache: OrderedDict[str, dict] = OrderedDict()

    def features(name: str) -> dict:
        if name not in cache:
            cache[name] = h5io.read_features(features_path, name)
            if len(cache) > 16:
                cache.popitem(last=False)
        return cache[name]

    for n0, n1 in tqdm(sh.split(new_pairs), desc=f"match {matcher.name}", unit="pair", disable=not progress):
        f0, f1 = features(n0), features(n1)
        matches, scores = matcher.match(f0, f1)
        m0, s0 = h5io.matches_to_matches0(matches, scores, len(f0["keypoints"]))
        h5io.write_matches(sh.shard_path(matches_path), n0, n1, m0, s0)
    sh.merge(matches_path)
    return {"pairs_total": len(pairs), "pairs_reused": len(pairs) - len(new_pairs),
            "pairs_computed": len(new_pairs), "images_extracted": len(todo),
            "images_reused": len(image_names) - len(todo)}


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Extract and match sparse features (hloc HDF5 outputs).")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--pairs", type=Path, required=True, help="hloc pair file")
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--matches", type=Path, required=True)
    parser.add_argument("--matcher", default="sift", help="sift | disk+lightglue | aliked+lightglue | "
                                                          "xfeat+lighterglue")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("overrides", nargs="*", help="matcher conf as key=value")
    args = parser.parse_args(argv)
    from l2m.images import list_images
    from l2m_sfm.images import format_listing

    from l2m_sfm.shards import setup

    sh = setup(args.device)  # torchrun: this rank's block, its own GPU or share of the CPU threads
    names, skipped = list_images(args.images)
    if skipped and sh.is_main:
        print(format_listing(args.images, [], skipped), file=sys.stderr)
    stats = main({"matcher": args.matcher, "matcher_conf": parse_overrides(args.overrides),
                  "device": sh.device(args.device)}, args.images, names, args.pairs, args.features,
                 args.matches, overwrite=args.overwrite, progress=sh.is_main, shards=sh)
    print(" ".join(f"{k}={v}" for k, v in stats.items()))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
