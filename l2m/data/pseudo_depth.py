"""Built-in pseudo-disparity for photos without a depth map (no monocular-depth weights install here).

What it is — three generators, all returning a relative disparity (H, W) float32 >= 0 (larger = nearer):
* ``popup`` (default, image-driven): a "pop-up" scene in the spirit of Hoiem et al.'s automatic photo pop-up.
  The image is cut into colour segments (k-means in Lab, connected components at full resolution, speckle
  removed); a random horizon row splits a ground plane (disparity linear in the row below the horizon, i.e. a
  level camera over flat ground) from the background. Wide segments below the horizon follow the ground;
  other segments become slightly slanted vertical billboards standing where their lowest pixels touch the
  ground; segments entirely above the horizon and sky pixels are far. Small smooth noise is added.
* ``planes``: a slanted ground plane plus 1-4 random fronto-parallel or slanted rectangles in front of it.
* ``smooth``: a smooth random surface (sum of a few random low-frequency cosines) with a mild ground ramp.

Limits (read before training on it): the geometry is invented, not estimated. Depth edges follow colour edges
(not object boundaries), so textured objects get cut into several layers and same-coloured neighbours at
different depths are merged; the ground/horizon model is wrong for close-ups, indoor scenes, aerial and
tilted photos; nothing is curved except through the noise. Correspondences stay exact with respect to this
pseudo geometry, so the pairs are geometrically consistent training data, but their parallax and occlusion
statistics differ from real scenes. Supply real disparity (e.g. Depth Anything V2 .npy) whenever possible.
"""
from __future__ import annotations

import cv2
import numpy as np

KINDS = ("popup", "planes", "smooth")


def smooth_noise(h: int, w: int, rng: np.random.Generator, n_waves: int = 6, max_freq: float = 3.0) -> np.ndarray:
    """Sum of random low-frequency cosines over the image, normalised to [-1, 1]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = x / max(w, h), y / max(w, h)
    out = np.zeros((h, w), np.float32)
    for _ in range(n_waves):
        fx, fy = rng.uniform(-max_freq, max_freq, 2)
        out += rng.uniform(0.3, 1.0) * np.cos(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
    return out / max(1e-6, float(np.abs(out).max()))


def _ground(h: int, horizon: float, far: float) -> np.ndarray:
    rows = np.arange(h, dtype=np.float32) + 0.5
    return far + (1 - far) * np.clip((rows - horizon) / max(1.0, h - horizon), 0, 1)


def planes_disparity(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Ground plane with 1-4 random rectangles (fronto-parallel or slanted) standing on it."""
    horizon = rng.uniform(0.25, 0.6) * h
    ground = _ground(h, horizon, 0.05)
    disp = np.repeat(ground[:, None], w, 1)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(rng.integers(1, 5)):
        x0, x1 = np.sort(rng.uniform(0, w, 2))
        bottom = rng.uniform(horizon + 0.1 * (h - horizon), h * 1.05)
        top = bottom - rng.uniform(0.2, 0.7) * h
        if x1 - x0 < 0.08 * w:
            x1 = min(w, x0 + 0.08 * w)
        d0 = float(_ground(h, horizon, 0.05)[int(np.clip(bottom, 0, h - 1))])
        slant = rng.uniform(-0.3, 0.3) * d0 * (x - (x0 + x1) / 2) / w if rng.random() < 0.5 else 0
        plane = np.clip(d0 + slant, 0.02, None)
        inside = (x >= x0) & (x < x1) & (y >= top) & (y < bottom)
        disp = np.where(inside & (plane > disp), plane, disp)
    return disp.astype(np.float32)


def smooth_disparity(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random surface: ground ramp plus low-frequency noise, strictly positive."""
    ramp = _ground(h, rng.uniform(0.0, 0.4) * h, 0.2)[:, None]
    disp = ramp * (1 + 0.35 * smooth_noise(h, w, rng)) + 0.05
    return np.clip(disp, 0.02, None).astype(np.float32)


def _segments(image: np.ndarray, rng: np.random.Generator, k: int) -> np.ndarray:
    """Connected colour segments (int32 labels) from k-means in Lab fitted at low resolution."""
    h, w = image.shape[:2]
    lab = cv2.cvtColor(cv2.GaussianBlur(image, (0, 0), 3.0), cv2.COLOR_RGB2LAB).astype(np.float32)
    s = 96 / max(h, w)
    small = cv2.resize(lab, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    samples = small.reshape(-1, 3)
    centres = samples[rng.choice(len(samples), k, replace=False)]
    for _ in range(10):  # Lloyd iterations, seeded by rng (cv2.kmeans has a global RNG)
        lab_id = ((samples[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        for c in range(k):
            if (lab_id == c).any():
                centres[c] = samples[lab_id == c].mean(0)
    full = lab.reshape(-1, 3)
    ids = ((full[:, None] - centres[None]) ** 2).sum(-1).argmin(1).reshape(h, w).astype(np.uint8)
    ids = cv2.medianBlur(ids, 9)
    labels = np.zeros((h, w), np.int32)
    nxt = 1
    for c in range(k):
        n, comp = cv2.connectedComponents((ids == c).astype(np.uint8), connectivity=4)
        m = comp > 0
        labels[m] = comp[m] + nxt - 1
        nxt += n - 1
    return labels


def popup_disparity(image: np.ndarray, rng: np.random.Generator, sky: np.ndarray | None = None) -> np.ndarray:
    """Image-driven pop-up disparity (ground + billboards + far background + sky at 0); see the module doc."""
    h, w = image.shape[:2]
    labels = _segments(image, rng, int(rng.integers(4, 8)))
    horizon = rng.uniform(0.3, 0.55) * h
    if sky is not None and sky.any():
        horizon = max(horizon, float(np.quantile(np.nonzero(sky)[0], 0.9)))
    far = 0.04
    ground = _ground(h, horizon, far)
    disp = np.repeat(ground[:, None], w, 1)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    min_area = 0.01 * h * w
    ids, counts = np.unique(labels, return_counts=True)
    for lab_id, cnt in zip(ids, counts):
        if cnt < min_area:
            continue
        m = labels == lab_id
        rows, cols = np.nonzero(m)
        top, bottom = np.quantile(rows, 0.02), np.quantile(rows, 0.98)
        width = (np.quantile(cols, 0.98) - np.quantile(cols, 0.02)) / w
        if bottom <= horizon:  # entirely above the horizon: distant background
            disp[m] = far * rng.uniform(0.5, 2.0)
        elif (top > horizon - 0.02 * h and width > 0.3) or bottom - top < 0.1 * h:  # ground texture
            continue
        else:  # standing billboard at its contact row, slightly slanted
            d0 = ground[int(np.clip(bottom, 0, h - 1))]
            xc = cols.mean()
            slant = rng.uniform(-0.15, 0.15) * d0 * (x[m] - xc) / w
            disp[m] = np.clip(d0 + slant, far, None)
    disp = disp * (1 + 0.05 * smooth_noise(h, w, rng, 4, 2.0))
    if sky is not None:
        disp[sky] = 0.0
    return np.clip(disp, 0, None).astype(np.float32)


def pseudo_disparity(image: np.ndarray, rng: np.random.Generator, kind: str = "popup",
                     sky: np.ndarray | None = None) -> np.ndarray:
    """Relative disparity (H, W) float32 for an RGB uint8 image by one of KINDS (see the module docstring)."""
    h, w = image.shape[:2]
    if kind == "popup":
        return popup_disparity(image, rng, sky)
    if kind == "planes":
        disp = planes_disparity(h, w, rng)
    elif kind == "smooth":
        disp = smooth_disparity(h, w, rng)
    else:
        raise ValueError(f"Unknown pseudo-depth kind {kind!r}; use one of {', '.join(KINDS)}")
    if sky is not None:
        disp[sky] = 0.0
    return disp
