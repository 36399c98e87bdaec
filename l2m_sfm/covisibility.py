"""Which image pairs of a ground-truth model see a common part of the scene (cameras and poses only).

GT models of the dev scenes hold cameras but no 3D points, so co-visibility is judged from the frustums:
1. scene depth: the point nearest (least squares) to every camera's optical axis is where the cameras look; each
   camera's depth is the distance of that point along its own axis (cameras behind it: the median of the others);
2. a 16 x 16 grid of A's pixels is lifted to A's depth (fronto-parallel plane) and projected into B;
   share(A -> B) = fraction landing inside B's image in front of B;
3. a pair shares a view when max(share(A -> B), share(B -> A)) >= `min_share` (default 0.05) and the angle between
   the optical axes is at most `max_angle_deg` (default 120): beyond it the cameras face opposite sides of the
   scene (turntable views 180 degrees apart see the same plane in their frustums, but not the same surface).
   120, not 90: fountain-P11's pairs 0000/0009 (96 deg) and 0000/0010 (108 deg) verify with SIFT and do overlap.
A verified pair whose cameras share no view (criterion false) is a false verified pair.
"""
from __future__ import annotations

import itertools

import numpy as np
import pycolmap


def _look_at(centres: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Least-squares point nearest to the lines c_i + t d_i (d_i unit)."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c, d in zip(centres, axes):
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ c
    return np.linalg.lstsq(A, b, rcond=None)[0]


def scene_depths(gt: pycolmap.Reconstruction) -> dict[str, float]:
    """Image name -> depth (GT units) of the scene along the camera's optical axis (see module doc)."""
    images = [im for im in gt.images.values() if im.has_pose]
    centres = np.array([im.projection_center() for im in images])
    axes = np.array([im.cam_from_world().rotation.matrix()[2] for im in images])  # camera z in world
    target = _look_at(centres, axes)
    depth = np.einsum("ij,ij->i", target - centres, axes)
    good = depth > 0
    fallback = float(np.median(depth[good])) if good.any() else float(np.median(
        np.linalg.norm(centres - centres.mean(0), axis=1)))
    return {im.name: float(d) if d > 0 else fallback for im, d in zip(images, depth)}


def view_share(gt: pycolmap.Reconstruction, name_a: str, name_b: str, depths: dict[str, float],
               grid: int = 16) -> float:
    """Fraction of A's pixel grid, lifted to A's scene depth, that B sees inside its image."""
    ims = {im.name: im for im in gt.images.values()}
    a, b = ims[name_a], ims[name_b]
    cam_a, cam_b = gt.cameras[a.camera_id], gt.cameras[b.camera_id]
    u, v = np.meshgrid((np.arange(grid) + 0.5) / grid * cam_a.width, (np.arange(grid) + 0.5) / grid * cam_a.height)
    rays = cam_a.cam_from_img(np.stack([u.ravel(), v.ravel()], 1))  # (n, 2) normalised, z = 1
    pts_a = np.concatenate([rays, np.ones((len(rays), 1))], 1) * depths[name_a]
    world = np.array([a.cam_from_world().inverse() * p for p in pts_a])
    in_b = np.array([b.cam_from_world() * p for p in world])
    front = in_b[:, 2] > 1e-9
    if not front.any():
        return 0.0
    px = cam_b.img_from_cam(in_b[front])
    inside = (px[:, 0] >= 0) & (px[:, 0] < cam_b.width) & (px[:, 1] >= 0) & (px[:, 1] < cam_b.height)
    return float(inside.sum()) / len(pts_a)


def covisible_pairs(gt: pycolmap.Reconstruction, max_angle_deg: float = 120.0) -> dict[tuple[str, str], float]:
    """Sorted name pair -> max view share (0 when the optical axes differ by more than `max_angle_deg`), for every
    pair of GT images; the pair is co-visible when its share is >= min_share (0.05)."""
    depths = scene_depths(gt)
    axis = {im.name: im.cam_from_world().rotation.matrix()[2] for im in gt.images.values() if im.has_pose}
    names = sorted(depths)
    cos_max = np.cos(np.deg2rad(max_angle_deg))
    return {(a, b): max(view_share(gt, a, b, depths), view_share(gt, b, a, depths))
            if float(axis[a] @ axis[b]) >= cos_max else 0.0 for a, b in itertools.combinations(names, 2)}
