"""Sky segmentation behind a small interface: an ONNX model when the user has one, else a built-in heuristic.

Sky pixels get depth 0 in both views, so they never receive ground-truth correspondences (spec §10).

* `OnnxSkySegmenter(path)`: a U^2-Net-style sky model (spec §10: xiongzhu666/Sky-Segmentation-and-Post-
  processing) run with onnxruntime on CPU: halve with pyrDown while both sides are >= 640, resize to 320x320,
  ImageNet mean/std (input is RGB already), min-max the first output to 0..255, resize back, sky = > 127.5.
* `HeuristicSkySegmenter()` (built-in fallback): pixels that are bright, smooth (small local gradient) and blue
  or grey-white, kept only where they form regions touching the top border of the image, then cleaned with a
  morphological opening/closing. Limits: it misses night skies and dark storm clouds, can take a smooth white
  wall or fog that touches the top border for sky, and cuts strongly textured clouds out of the sky.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np


class SkySegmenter(Protocol):
    """RGB uint8 (H, W, 3) -> bool (H, W), True = sky."""

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


class OnnxSkySegmenter:
    """Sky mask from an ONNX segmentation model file (input 1x3x320x320 normalised RGB, output a sky map)."""

    def __init__(self, path: Path | str, input_size: int = 320):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Sky model {path} not found; pass an existing .onnx file or omit it to use "
                                    "the built-in heuristic")
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError("onnxruntime is needed for an ONNX sky model: pip install onnxruntime") from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.size = int(input_size)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        img = image
        while min(img.shape[:2]) >= 640:
            img = cv2.pyrDown(img)
        x = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
        x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
        out = self.session.run(None, {self.input_name: x.transpose(2, 0, 1)[None]})[0]
        out = np.asarray(out, np.float32).reshape(out.shape[-2:])
        out = (out - out.min()) / max(1e-12, float(out.max() - out.min())) * 255
        return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR) > 127.5


class HeuristicSkySegmenter:
    """Bright, smooth, blue-or-grey regions connected to the top border (see the module docstring)."""

    def __init__(self, min_brightness: float = 0.45, max_gradient: float = 0.04, min_fraction: float = 0.01):
        self.min_brightness, self.max_gradient, self.min_fraction = min_brightness, max_gradient, min_fraction

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        s = 256 / max(h, w)
        small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        f = small.astype(np.float32) / 255
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV).astype(np.float32)
        value, sat, hue = hsv[..., 2] / 255, hsv[..., 1] / 255, hsv[..., 0] * 2  # hue in degrees
        gray = cv2.GaussianBlur(f.mean(-1), (0, 0), 1.0)
        grad = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)) / 8
        grad = cv2.blur(grad, (5, 5))
        blue = (hue > 180) & (hue < 260) & (f[..., 2] >= f[..., 0])
        greyish = sat < 0.2
        cand = (value > self.min_brightness) & (grad < self.max_gradient) & (blue | greyish)
        cand = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        n, comp = cv2.connectedComponents(cand, connectivity=4)
        top = np.unique(comp[0][comp[0] > 0])
        mask = np.isin(comp, top)
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)) > 0
        if mask.mean() < self.min_fraction:
            return np.zeros((h, w), bool)
        return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0


def get_sky_segmenter(model: Path | str | None = None) -> SkySegmenter:
    """The ONNX segmenter for a model path, else the built-in heuristic."""
    return OnnxSkySegmenter(model) if model else HeuristicSkySegmenter()
