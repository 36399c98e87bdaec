"""Hole filling of rendered novel views behind a small pluggable interface.

The spec (§8.7) fills holes with Stable Diffusion 2 inpainting; no diffusion model installs here, so the
default is OpenCV's Telea fast-marching inpainting. Anything with `__call__(image, holes) -> image` can be
plugged in (`register_inpainter`). Inpainted pixels never carry depth, so they never get correspondences.
"""
from __future__ import annotations

from typing import Callable, Protocol

import cv2
import numpy as np


class Inpainter(Protocol):
    """Fill `holes` (H, W bool, True = fill) of an RGB uint8 image (H, W, 3); returns a new uint8 image."""

    def __call__(self, image: np.ndarray, holes: np.ndarray) -> np.ndarray: ...


class OpenCVInpainter:
    """cv2.inpaint with the Telea (default) or Navier-Stokes method and a radius in pixels."""

    def __init__(self, method: str = "telea", radius: float = 3.0):
        if method not in ("telea", "ns"):
            raise ValueError(f"OpenCVInpainter: unknown method {method!r}; use 'telea' or 'ns'")
        self.flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
        self.radius = float(radius)

    def __call__(self, image: np.ndarray, holes: np.ndarray) -> np.ndarray:
        if not holes.any():
            return image.copy()
        if holes.all():
            return np.zeros_like(image)
        return cv2.inpaint(np.ascontiguousarray(image), holes.astype(np.uint8), self.radius, self.flag)


class BlackInpainter:
    """Leave holes black (for debugging and for training with explicit hole masks)."""

    def __call__(self, image: np.ndarray, holes: np.ndarray) -> np.ndarray:
        out = image.copy()
        out[holes] = 0
        return out


INPAINTERS: dict[str, Callable[..., Inpainter]] = {
    "telea": lambda **kw: OpenCVInpainter("telea", **kw),
    "ns": lambda **kw: OpenCVInpainter("ns", **kw),
    "none": lambda **kw: BlackInpainter(),
}


def register_inpainter(name: str, factory: Callable[..., Inpainter]) -> None:
    """Make `get_inpainter(name)` return `factory(**options)` (e.g. a diffusion model where one is installed)."""
    INPAINTERS[name] = factory


def get_inpainter(name: str = "telea", **options) -> Inpainter:
    """An inpainter by name: 'telea' (default), 'ns', 'none', or a registered one."""
    if name not in INPAINTERS:
        raise ValueError(f"Unknown inpainter {name!r}; known: {', '.join(sorted(INPAINTERS))}")
    return INPAINTERS[name](**options)
