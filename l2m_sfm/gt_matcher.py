"""A ground-truth dense matcher: exact correspondences from depth maps and known cameras.

It reads a scene laid out as `l2m_sfm.sample_scene` writes it (`gt/` COLMAP model, `depth/<stem>.npz`),
so the dense SfM path (quantisation, database, mapping, evaluation) can be tested with perfect matches.
Pixels of image0 on a regular grid are lifted with their depth, moved to camera 1 and kept when they land
inside image 1 at a depth that agrees with image 1's depth map (visibility test). Output coordinates are in
pixels of the images given to `match_pair` (hloc convention), so resized inputs work too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from l2m.config import merge_conf
from l2m_sfm.matchers import PairMatches
from l2m_sfm.sample_scene import load_depth

default_conf = {
    "scene": None,  # directory holding gt/ and depth/ (required)
    "step": 4,  # grid stride in image-0 pixels
    "max_depth_error": 0.01,  # relative depth disagreement that counts as occluded
    "max_matches": None,  # keep at most this many (random, seeded) matches
    "seed": 0,
}


class GTMatcher:
    """PairMatcher giving exact correspondences of a scene with depth maps and GT cameras."""

    name = "gt"
    dense = True

    def __init__(self, conf: dict[str, Any] | None = None):
        import pycolmap

        self.conf = merge_conf(default_conf, conf, "gt_matcher")
        if not self.conf["scene"]:
            raise ValueError("gt_matcher needs conf['scene']: a directory with gt/ and depth/ "
                             "(e.g. datasets/samples/toybox, made by python -m l2m_sfm.sample_scene)")
        self.root = Path(self.conf["scene"])
        if not (self.root / "gt").is_dir():
            raise FileNotFoundError(f"{self.root / 'gt'} is missing: gt_matcher needs a COLMAP model there")
        self.model = pycolmap.Reconstruction(str(self.root / "gt"))
        self._depth: dict[str, np.ndarray] = {}

    def _view(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(K, R_cw, t_cw, depth) of an image name; K in the COLMAP pixel convention."""
        image = self.model.find_image_with_name(name)
        if image is None and "/" in name:  # the scene benchmark prefixes names with `<scene>/`
            name = name.split("/", 1)[1]
            image = self.model.find_image_with_name(name)
        if image is None:
            raise KeyError(f"gt_matcher: image {name!r} is not in {self.root / 'gt'}")
        if name not in self._depth:
            path = self.root / "depth" / (Path(name).with_suffix("").as_posix() + ".npz")
            if not path.exists():
                raise FileNotFoundError(f"gt_matcher: depth map {path} is missing")
            self._depth[name] = load_depth(path).astype(np.float64)
        cam = self.model.cameras[image.camera_id]
        pose = image.cam_from_world().matrix()
        return cam.calibration_matrix(), pose[:, :3], pose[:, 3], self._depth[name]

    def lift(self, name: str, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N,3) of GT-image pixels `xy` (hloc convention) and a mask of those with depth."""
        K, R, t, depth = self._view(name)
        z = depth_at(depth, xy)
        rays = np.linalg.solve(K, np.concatenate([xy + 0.5, np.ones((len(xy), 1))], 1).T).T
        return (rays * z[:, None] - t) @ R, z > 0  # world = R^T (x_cam - t)

    def project(self, name: str, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GT-image pixels (N,2, hloc convention) of world points and a mask of those visible (not occluded)."""
        K, R, t, depth = self._view(name)
        Xc = X @ R.T + t
        in_front = Xc[:, 2] > 1e-6
        uv = Xc @ K.T
        xy = uv[:, :2] / np.where(in_front, uv[:, 2], 1.0)[:, None] - 0.5
        h, w = depth.shape
        inside = in_front & (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
        z = np.zeros(len(xy))
        z[inside] = depth_at(depth, xy[inside])
        visible = inside & (z > 0) & (np.abs(z - Xc[:, 2]) < self.conf["max_depth_error"] * Xc[:, 2])
        return xy, visible

    def match_pair(self, image0: np.ndarray, image1: np.ndarray,
                   name0: str | None = None, name1: str | None = None) -> PairMatches:
        """Exact matches image0 -> image1 in pixels of the given images (hloc convention)."""
        if name0 is None or name1 is None:
            raise ValueError("gt_matcher needs the image names to find their depth and poses")
        d0, d1 = self._view(name0)[3], self._view(name1)[3]
        s0 = np.array([d0.shape[1] / image0.shape[1], d0.shape[0] / image0.shape[0]])  # given -> GT pixels
        s1 = np.array([d1.shape[1] / image1.shape[1], d1.shape[0] / image1.shape[0]])
        step = self.conf["step"]
        xs, ys = np.meshgrid(np.arange(step / 2, image0.shape[1], step), np.arange(step / 2, image0.shape[0], step))
        kp0 = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float64)  # hloc, given image 0
        X, valid = self.lift(name0, (kp0 + 0.5) * s0 - 0.5)
        g1, visible = self.project(name1, X)
        visible &= valid
        kp0, kp1 = kp0[visible], (g1[visible] + 0.5) / s1 - 0.5
        if self.conf["max_matches"] and len(kp0) > self.conf["max_matches"]:
            keep = np.sort(np.random.default_rng(self.conf["seed"]).permutation(len(kp0))[: self.conf["max_matches"]])
            kp0, kp1 = kp0[keep], kp1[keep]
        return PairMatches(kp0.astype(np.float32), kp1.astype(np.float32), np.ones(len(kp0), np.float32))

    def write_tracks(self, features_path: Path, matches_path: Path, pairs: list[tuple[str, str]],
                     step: int = 16, noise_px: float = 0.0, seed: int = 0) -> int:
        """Sparse hloc files with exact tracks: points lifted from every image's grid, seen where visible.

        Keypoints are the projections (+ Gaussian noise of `noise_px`); returns the number of 3D points.
        Used to test the COLMAP stages without any matcher.
        """
        from l2m_sfm.h5io import matches_to_matches0, write_keypoints, write_matches

        rng = np.random.default_rng(seed)
        names = sorted(im.name for im in self.model.images.values())
        points = []
        for name in names:
            h, w = self._view(name)[3].shape
            xs, ys = np.meshgrid(np.arange(step / 2, w, step), np.arange(step / 2, h, step))
            X, valid = self.lift(name, np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float64))
            points.append(X[valid])
        X = np.concatenate(points)
        index = {}
        for name in names:
            xy, visible = self.project(name, X)
            ids = np.flatnonzero(visible)
            kps = xy[ids] + rng.normal(0, noise_px, (len(ids), 2)) if noise_px else xy[ids]
            h, w = self._view(name)[3].shape
            write_keypoints(features_path, name, kps, np.ones(len(ids)), image_size=(w, h))
            index[name] = np.full(len(X), -1, np.int64)
            index[name][ids] = np.arange(len(ids))
        for a, b in pairs:
            common = np.flatnonzero((index[a] >= 0) & (index[b] >= 0))
            m0, s0 = matches_to_matches0(np.stack([index[a][common], index[b][common]], -1),
                                         np.ones(len(common)), int((index[a] >= 0).sum()))
            write_matches(matches_path, a, b, m0, s0)
        return len(X)


def depth_at(depth: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear depth at hloc pixel coordinates; 0 where a neighbour is empty or across a depth edge."""
    h, w = depth.shape
    x = np.clip(xy[:, 0], 0, w - 1)
    y = np.clip(xy[:, 1], 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(int), w - 2)
    y0 = np.minimum(np.floor(y).astype(int), h - 2)
    fx, fy = x - x0, y - y0
    n = np.stack([depth[y0, x0], depth[y0, x0 + 1], depth[y0 + 1, x0], depth[y0 + 1, x0 + 1]], -1)
    wts = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], -1)
    lo, hi = n.min(-1), n.max(-1)
    # inverse depth is affine in pixels on a plane, so interpolate it rather than depth; four neighbours on
    # one plane have no "twist" (i00 + i11 = i01 + i10): this rejects pixels next to creases and edges
    i = 1.0 / np.where(n > 0, n, 1.0)
    twist = np.abs(i[:, 0] + i[:, 3] - i[:, 1] - i[:, 2])
    ok = (lo > 0) & (hi < lo * 1.05) & (twist < 2e-4 * i.mean(-1))
    inv = (wts * i).sum(-1)
    return np.where(ok, 1.0 / np.maximum(inv, 1e-12), 0.0)


def build_gt_matcher(conf: dict[str, Any], device: str = "cpu") -> GTMatcher:
    """Registry factory (`get_matcher("gt", {"scene": ...})`); the device is ignored."""
    return GTMatcher(conf)
