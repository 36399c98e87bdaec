"""One synthetic training pair from one photo (spec §8-§10): crop, lift with depth, new pose, render, inpaint.

`generate_pair(image, disparity, rng, conf)` returns numpy arrays (see `PAIR_KEYS`); everything random comes from
`rng`, so a (seed, index) pair reproduces a sample exactly. Geometry conventions: `l2m.data.lifting`.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from l2m.config import merge_conf
from l2m.data.inpaint import Inpainter, get_inpainter
from l2m.data.lifting import (TEAR_THRESHOLD, disparity_to_depth, intrinsics_from_focal, normalize_disparity,
                              render_view, sample_image, tear_mask, unproject)
from l2m.data.poses import default_pose_conf, sample_covisible_pose

default_conf: dict[str, Any] = {
    "size": 512,  # square crop side (spec §8.1: short side to 512, centre crop)
    "focal_range": [0.45, 0.75],  # normalised focal f, fx = fy = f * size (spec §8.3)
    "depth_input": "disparity",  # 'disparity': spec min-max normalisation; 'depth': metric depth used unchanged
    "tear_threshold": TEAR_THRESHOLD,  # spec §8.4 on the Sobel magnitude of the [0,1] disparity
    "normalized_sobel": True,
    "near": 0.01,
    "pose": default_pose_conf,
    "inpainter": "telea",
    "inpaint_radius": 3.0,
    "pseudo_depth": "popup",  # used when no disparity is given: popup | planes | smooth
    "relight": {"enabled": False, "prob_A": 0.5, "prob_B": 0.5, "options": {}},
    "sky": {"enabled": False, "model": None},  # model: path of an ONNX sky segmenter, None = built-in heuristic
}

PAIR_KEYS = ("image_A", "image_B", "depth_A", "depth_B", "K_A", "K_B", "T_AtoB", "valid_A", "valid_B",
             "hole_B", "sky_A", "sky_B")


def center_crop_resize(array: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    """Resize so that the short side is `size` (aspect kept), then centre-crop to size x size."""
    h, w = array.shape[:2]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    if (nh, nw) != (h, w):
        array = cv2.resize(array, (nw, nh), interpolation=interpolation)
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(array[y0:y0 + size, x0:x0 + size])


def prepare_source(image: np.ndarray, disparity: np.ndarray | None, size: int
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop an RGB uint8 image and its disparity/depth map (any resolution, resized to the image) to size^2."""
    h, w = image.shape[:2]
    down = min(h, w) > size
    img = center_crop_resize(image, size, cv2.INTER_AREA if down else cv2.INTER_CUBIC)
    if disparity is None:
        return img, None
    d = np.asarray(disparity, np.float32)
    if d.ndim == 3:
        d = d[..., 0]
    if d.shape != (h, w):
        d = cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR)
    return img, center_crop_resize(d, size, cv2.INTER_LINEAR)


class PairGenerator:
    """Holds the configured inpainter / sky segmenter / relighter and makes pairs with `__call__`."""

    def __init__(self, conf: dict | None = None, inpainter: Inpainter | None = None, sky_segmenter=None,
                 device: str | torch.device = "cpu"):
        self.conf = merge_conf(default_conf, conf, "data")
        if self.conf["depth_input"] not in ("disparity", "depth"):
            raise ValueError(f"data.depth_input must be 'disparity' or 'depth', got {self.conf['depth_input']!r}")
        self.device = torch.device(device)
        self.inpainter = inpainter or get_inpainter(self.conf["inpainter"], **(
            {"radius": self.conf["inpaint_radius"]} if self.conf["inpainter"] in ("telea", "ns") else {}))
        self.sky = sky_segmenter
        if self.sky is None and self.conf["sky"]["enabled"]:
            from l2m.data.sky import get_sky_segmenter
            self.sky = get_sky_segmenter(self.conf["sky"]["model"])

    def lift(self, image: np.ndarray, disparity: np.ndarray | None, rng: np.random.Generator
             ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, np.ndarray, dict]:
        """Crop and lift: (image crop, depth (S,S) tensor, visible-vertex mask, sky mask, meta)."""
        S = int(self.conf["size"])
        img, disp = prepare_source(image, disparity, S)
        sky = self.sky(img) if self.sky is not None else np.zeros(img.shape[:2], bool)
        meta: dict[str, Any] = {}
        if disp is None:
            from l2m.data.pseudo_depth import pseudo_disparity
            disp = pseudo_disparity(img, rng, kind=self.conf["pseudo_depth"], sky=sky)
            meta["pseudo_depth"] = self.conf["pseudo_depth"]
        d = torch.from_numpy(np.asarray(disp, np.float32)).to(self.device)
        if self.conf["depth_input"] == "disparity":
            depth, d01 = disparity_to_depth(d)
        else:
            ok = torch.isfinite(d) & (d > 0)
            depth = torch.where(ok, d, torch.zeros_like(d))
            d01 = normalize_disparity(torch.where(ok, 1.0 / depth.clamp_min(1e-12), torch.zeros_like(d)))
        vis = tear_mask(d01, self.conf["tear_threshold"], self.conf["normalized_sobel"])
        return img, depth, vis, sky, meta

    def __call__(self, image: np.ndarray, disparity: np.ndarray | None, rng: np.random.Generator) -> dict:
        """A pair as numpy arrays (PAIR_KEYS) plus "meta" (focal, pose parameters, relighting, ...)."""
        conf = self.conf
        S = int(conf["size"])
        img, depth, vis, sky, meta = self.lift(image, disparity, rng)
        f = float(rng.uniform(*conf["focal_range"]))
        K = intrinsics_from_focal(f, S, S)
        pts = unproject(depth, K.float().to(self.device))[::8, ::8]
        keep = ~torch.from_numpy(sky[::8, ::8]).to(self.device) & (depth[::8, ::8] > 0)
        scale = 1.0
        if conf["depth_input"] == "depth":  # keep the spec's ranges relative to the near scene depth
            scale = float(torch.quantile(depth[depth > 0], 0.05)) if (depth > 0).any() else 1.0
        pts_np = pts[keep].double().cpu().numpy() / scale
        T, pose = sample_covisible_pose(rng, pts_np, K.numpy(), S, S, conf["pose"])
        T[:3, 3] *= scale
        meta.update(focal=f, pose=pose, translation_scale=scale)

        src_A = src_B = torch.from_numpy(img).to(self.device).permute(2, 0, 1).float() / 255
        if conf["relight"]["enabled"]:
            from l2m.data.relight import relight_random
            rl = conf["relight"]
            Kd = K.float().to(self.device)
            if rng.random() < rl["prob_A"]:
                src_A, meta["relight_A"] = relight_random(src_A, depth, Kd, rng, rl["options"])
            if rng.random() < rl["prob_B"]:
                src_B, meta["relight_B"] = relight_random(
                    torch.from_numpy(img).to(self.device).permute(2, 0, 1).float() / 255, depth, Kd, rng,
                    rl["options"])
        Tt = torch.from_numpy(T).to(self.device)
        sky_t = torch.from_numpy(sky).to(self.device).float()[..., None]
        out = render_view(depth, K.to(self.device), K.to(self.device), Tt, (S, S), vertex_visible=vis,
                          vertex_attrs=sky_t, near=conf["near"])
        hole = ~out["covered"] | (out["visible"] < 0.5)
        colour = sample_image(src_B, out["source_xy"]).permute(1, 2, 0)
        image_B = (colour.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
        hole_np = hole.cpu().numpy()
        image_B = self.inpainter(image_B, hole_np)
        image_A = (src_A.permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
        sky_B = ((out["attrs"][..., 0] > 0.5) & ~hole).cpu().numpy()
        depth_B = torch.where(hole, torch.zeros_like(out["depth"]), out["depth"]).cpu().numpy()
        depth_A = depth.cpu().numpy().astype(np.float32).copy()
        depth_A[sky] = 0
        depth_B[sky_B] = 0
        meta.update(hole_fraction=float(hole_np.mean()), sky_fraction=float(sky.mean()))
        return {
            "image_A": image_A, "image_B": image_B,
            "depth_A": depth_A, "depth_B": depth_B.astype(np.float32),
            "K_A": K.numpy(), "K_B": K.numpy().copy(), "T_AtoB": T,
            "valid_A": depth_A > 0, "valid_B": depth_B > 0, "hole_B": hole_np,
            "sky_A": sky, "sky_B": sky_B, "meta": meta,
        }

