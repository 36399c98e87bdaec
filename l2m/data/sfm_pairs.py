"""Real image pairs with sparse correspondences from COLMAP reconstructions (real 3D parallax for stage 2).

Two registered images that observe the same 3D point give one correspondence: the 2D observations of the
point in both images (raw image pixels, COLMAP convention: top-left pixel centre at (0.5, 0.5)), so lens
distortion needs no model and the correspondence is as good as the reconstruction's track (its reprojection
error filter). `covisible_pairs` lists them per image pair; `SfmPairs` serves random scale + crop views of
pairs at the training resolution with the correspondences inside both crops, in the decoder's normalised
coordinates (x, y in [-1, 1], pixel centres at -1 + (2i+1)/N).

A reconstruction of a folder of photos is what `python -m l2m_sfm.reconstruct --images DIR` writes (`sfm/`);
images are looked up by their COLMAP name under the given image folder. Scenes that do not reconstruct (a
single pair, uncalibrated) still give their geometrically verified matches (`verified_pairs`, from the
run's `database.db`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass
class SparsePair:
    """Image paths and (N, 2) matching pixels (COLMAP convention) of one covisible pair."""

    path_A: Path
    path_B: Path
    xy_A: np.ndarray
    xy_B: np.ndarray


def _sparse_pair(image_dir: Path, name_a: str, name_b: str, xy_a, xy_b, source: Path) -> SparsePair:
    paths = (image_dir / name_a, image_dir / name_b)
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: image {p.name} of {source} is not under {image_dir}")
    return SparsePair(*paths, np.asarray(xy_a, np.float32), np.asarray(xy_b, np.float32))


def source_pairs(entry: Mapping[str, str], min_points: int = 50) -> list[SparsePair]:
    """The pairs of one source: ``{"images": DIR, "model": COLMAP model DIR}`` (covisible_pairs) or
    ``{"images": DIR, "database": COLMAP database}`` (verified_pairs)."""
    if not isinstance(entry, Mapping) or set(entry) not in ({"images", "model"}, {"images", "database"}):
        raise ValueError("data.sfm entries are {'images': DIR, 'model': COLMAP model DIR} or "
                         f"{{'images': DIR, 'database': COLMAP database}}, got {entry!r}")
    if "model" in entry:
        return covisible_pairs(Path(entry["model"]), Path(entry["images"]), min_points)
    return verified_pairs(Path(entry["database"]), Path(entry["images"]), min_points)


def covisible_pairs(model_dir: Path, image_dir: Path, min_points: int = 50) -> list[SparsePair]:
    """Every image pair of the reconstruction at `model_dir` sharing at least `min_points` 3D points."""
    import pycolmap

    model_dir, image_dir = Path(model_dir), Path(image_dir)
    if not (model_dir / "images.bin").is_file() and not (model_dir / "images.txt").is_file():
        raise FileNotFoundError(f"{model_dir} is not a COLMAP model (no images.bin / images.txt); "
                                f"reconstruct it first: python -m l2m_sfm.reconstruct --images {image_dir}")
    rec = pycolmap.Reconstruction(str(model_dir))
    obs: dict[tuple[int, int], tuple[list, list]] = {}
    for point in rec.points3D.values():
        seen: dict[int, np.ndarray] = {}
        for el in point.track.elements:  # one observation per image (the first, if a track repeats an image)
            seen.setdefault(el.image_id, rec.images[el.image_id].points2D[el.point2D_idx].xy)
        for a, b in itertools.combinations(sorted(seen), 2):
            la, lb = obs.setdefault((a, b), ([], []))
            la.append(seen[a])
            lb.append(seen[b])
    pairs = []
    for (a, b), (la, lb) in sorted(obs.items()):
        if len(la) < min_points:
            continue
        pairs.append(_sparse_pair(image_dir, rec.images[a].name, rec.images[b].name, la, lb, model_dir))
    return pairs


def verified_pairs(database: Path, image_dir: Path, min_matches: int = 50) -> list[SparsePair]:
    """Every image pair of a COLMAP database with at least `min_matches` geometrically verified matches
    (two-view geometry inliers; for scenes too small or too hard to reconstruct, e.g. a single pair)."""
    import pycolmap

    database, image_dir = Path(database), Path(image_dir)
    if not database.is_file():
        raise FileNotFoundError(f"{database}: no COLMAP database (python -m l2m_sfm.reconstruct writes one)")
    pairs = []
    with pycolmap.Database.open(str(database)) as db:
        names = {im.image_id: im.name for im in db.read_all_images()}
        for pair_id, tvg in zip(*db.read_two_view_geometries()):
            m = np.asarray(tvg.inlier_matches)
            if len(m) < min_matches:
                continue
            a, b = pycolmap.pair_id_to_image_pair(pair_id)
            ka, kb = db.read_keypoints(a)[:, :2], db.read_keypoints(b)[:, :2]
            pairs.append(_sparse_pair(image_dir, names[a], names[b], ka[m[:, 0]], kb[m[:, 1]], database))
    return pairs


def random_crop(size_hw: tuple[int, int], out_hw: tuple[int, int], rng: np.random.Generator,
                zoom: tuple[float, float]) -> tuple[float, float, float]:
    """(scale, x0, y0): scale the image so it covers `out_hw` times a random zoom, then crop at (x0, y0)."""
    h, w = size_hw
    H, W = out_hw
    scale = max(H / h, W / w) * rng.uniform(*zoom)
    x0 = rng.uniform(0, max(w * scale - W, 0))
    y0 = rng.uniform(0, max(h * scale - H, 0))
    return scale, x0, y0


def _affine_index(a: float, b: float) -> list[float]:
    """Row of cv2's index-convention matrix for x' = a·x + b in continuous pixels (centres at i + 0.5)."""
    return [a, 0.5 * a - 0.5 + b]


def _crop(image: np.ndarray, scale: float, x0: float, y0: float, out_hw: tuple[int, int]) -> np.ndarray:
    """The (H, W) window at (x0, y0) of `image` scaled by `scale` (continuous pixels, area filter to shrink)."""
    H, W = out_hw
    sx = sy = 1.0
    if scale < 1:  # area-filter first, then an exact sub-pixel crop of the small image
        h, w = image.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))  # dsize: cv2 then maps with dsize / size
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        sx, sy = size[0] / w, size[1] / h
    ax, bx = _affine_index(scale / sx, -x0)
    ay, by = _affine_index(scale / sy, -y0)
    M = np.array([[ax, 0, bx], [0, ay, by]], np.float64)
    return cv2.warpAffine(image, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


class SfmPairs(Dataset):
    """Random crops of covisible real pairs: image_A/B (3,H,W) in [0,1], sparse_A/B (max_points, 2) normalised,
    sparse_valid (max_points,) bool. Sample idx is pair idx // repeats; its crop comes from
    np.random.default_rng([seed, idx]) (reproducible in any worker). Views are swapped with probability 1/2."""

    def __init__(self, pairs: Sequence[SparsePair], resolution: tuple[int, int], repeats: int = 1,
                 seed: int = 0, max_points: int = 1024, zoom: tuple[float, float] = (1.0, 1.6),
                 min_points: int = 16, tries: int = 8):
        if not pairs:
            raise ValueError("SfmPairs: no covisible pairs (lower min_points or check the reconstructions)")
        self.pairs, self.resolution = list(pairs), (int(resolution[0]), int(resolution[1]))
        self.repeats, self.seed, self.max_points = int(repeats), int(seed), int(max_points)
        self.zoom, self.min_points, self.tries = tuple(zoom), int(min_points), int(tries)

    def __len__(self) -> int:
        return len(self.pairs) * self.repeats

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        from l2m.images import read_image

        pair = self.pairs[int(idx) // self.repeats]
        rng = np.random.default_rng([self.seed, int(idx)])
        views = [(read_image(pair.path_A), pair.xy_A), (read_image(pair.path_B), pair.xy_B)]
        if rng.random() < 0.5:
            views.reverse()
        H, W = self.resolution
        best = None
        for _ in range(self.tries):  # the crops that keep the most correspondences of a few random draws
            crops = [random_crop(im.shape[:2], (H, W), rng, self.zoom) for im, _ in views]
            moved = [pts * s - np.array([x0, y0], np.float32) for (_, pts), (s, x0, y0) in zip(views, crops)]
            inside = np.ones(len(moved[0]), bool)
            for p in moved:
                inside &= (p[:, 0] >= 0) & (p[:, 0] < W) & (p[:, 1] >= 0) & (p[:, 1] < H)
            if best is None or inside.sum() > best[2].sum():
                best = (crops, moved, inside)
            if inside.sum() >= self.min_points:
                break
        crops, moved, inside = best
        keep = np.flatnonzero(inside)
        if len(keep) > self.max_points:
            keep = rng.choice(keep, self.max_points, replace=False)
        out: dict[str, torch.Tensor] = {}
        scale_norm = np.array([2 / W, 2 / H], np.float32)
        for tag, (im, _), crop, p in zip("AB", views, crops, moved):
            image = _crop(im, *crop, (H, W))
            out[f"image_{tag}"] = torch.from_numpy(image).permute(2, 0, 1).float() / 255
            pts = np.zeros((self.max_points, 2), np.float32)
            pts[:len(keep)] = p[keep] * scale_norm - 1
            out[f"sparse_{tag}"] = torch.from_numpy(pts)
        valid = torch.zeros(self.max_points, dtype=torch.bool)
        valid[:len(keep)] = True
        out["sparse_valid"] = valid
        return out
