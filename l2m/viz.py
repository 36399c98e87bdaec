"""Pictures for people: matches between two images (more views are added by the model code)."""
from __future__ import annotations

import cv2
import numpy as np


def draw_matches(image0: np.ndarray, image1: np.ndarray, kpts0: np.ndarray, kpts1: np.ndarray,
                 max_lines: int = 300, colors: np.ndarray | None = None, seed: int = 0,
                 height: int = 480) -> np.ndarray:
    """Side-by-side RGB picture with lines between matched pixels (hloc convention coordinates)."""
    s0, s1 = height / image0.shape[0], height / image1.shape[0]
    a = cv2.resize(image0, (round(image0.shape[1] * s0), height), interpolation=cv2.INTER_AREA)
    b = cv2.resize(image1, (round(image1.shape[1] * s1), height), interpolation=cv2.INTER_AREA)
    if a.ndim == 2:
        a, b = (cv2.cvtColor(x, cv2.COLOR_GRAY2RGB) for x in (a, b))
    canvas = np.concatenate([a, b], axis=1).copy()
    n = len(kpts0)
    idx = np.random.default_rng(seed).permutation(n)[:max_lines] if n > max_lines else np.arange(n)
    if colors is None:
        colors = np.tile(np.array([[0, 255, 0]], np.uint8), (n, 1))
    for i in idx:
        p0 = (kpts0[i] + 0.5) * s0 - 0.5
        p1 = (kpts1[i] + 0.5) * s1 - 0.5 + np.array([a.shape[1], 0])
        c = tuple(int(v) for v in colors[i])
        cv2.line(canvas, tuple(np.round(p0).astype(int)), tuple(np.round(p1).astype(int)), c, 1, cv2.LINE_AA)
        cv2.circle(canvas, tuple(np.round(p0).astype(int)), 2, c, -1)
        cv2.circle(canvas, tuple(np.round(p1).astype(int)), 2, c, -1)
    return canvas
