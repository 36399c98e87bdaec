"""Relighting for appearance augmentation (spec §9, without Blender): Lambertian shading from depth normals.

out = clip(albedo * wb * exposure * (ambient + sum_k c_k * e_k * max(0, n . l_k) / |L_k - P|^2)), where the
albedo proxy is the photo itself, n the normals of the (Gaussian-blurred) depth surface, L_k point lights
placed like the spec's Blender demo (converted from Blender axes: x right, y forward = depth, z up), c_k their
RGB colours, wb a colour-temperature white balance and `exposure` chosen so that the median shading is about 1.
Only the image changes: depth, K and pose (hence correspondences) are untouched. Batched over (B, 3, H, W).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from l2m.config import merge_conf
from l2m.data.lifting import unproject

default_relight_conf: dict[str, Any] = {
    "num_lights": [1, 4],  # inclusive range
    "power": [0.4, 2.0],  # light strength (shading units at distance 1)
    "ambient": [0.25, 0.6],
    "color_temperature_K": [3000.0, 9000.0],
    "colored_light_prob": 0.5,  # each channel ~ U(0.5, 1) with this probability, else white
    "exposure_jitter": [0.85, 1.15],
    "blur_sigma": 2.0,  # smoothing of the depth before normals (spec §9: sigma 2 on the disparity)
}


def kelvin_to_rgb(kelvin: float) -> np.ndarray:
    """Approximate RGB multipliers of a black body at `kelvin` (Tanner Helland's fit), normalised to max 1."""
    t = kelvin / 100.0
    r = 255.0 if t <= 66 else 329.698727446 * (t - 60) ** -0.1332047592
    g = 99.4708025861 * math.log(t) - 161.1195681661 if t <= 66 else 288.1221695283 * (t - 60) ** -0.0755148492
    b = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.5177312231 * math.log(t - 10) - 305.0447927307)
    rgb = np.clip(np.array([r, g, b]), 1.0, 255.0)
    return rgb / rgb.max()


def depth_normals(depth: Tensor, K: Tensor, blur_sigma: float = 0.0) -> tuple[Tensor, Tensor]:
    """Camera-space points (B, H, W, 3) and unit normals facing the camera (B, H, W, 3) of depth (B, H, W)."""
    if blur_sigma > 0:
        r = max(1, int(3 * blur_sigma))
        x = torch.arange(-r, r + 1, dtype=depth.dtype, device=depth.device)
        g = torch.exp(-x ** 2 / (2 * blur_sigma ** 2))
        g = g / g.sum()
        d = F.pad(1.0 / depth.clamp_min(1e-6)[:, None], (r, r, r, r), mode="replicate")
        d = F.conv2d(F.conv2d(d, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))[:, 0]
        depth = 1.0 / d.clamp_min(1e-9)  # blur in disparity, as the spec does
    P = torch.stack([unproject(depth[b], K[b]) for b in range(depth.shape[0])])
    Pp = F.pad(P.permute(0, 3, 1, 2), (1, 1, 1, 1), mode="replicate").permute(0, 2, 3, 1)
    dx = Pp[:, 1:-1, 2:] - Pp[:, 1:-1, :-2]
    dy = Pp[:, 2:, 1:-1] - Pp[:, :-2, 1:-1]
    n = F.normalize(torch.cross(dy, dx, dim=-1), dim=-1)
    n = torch.where((n * P).sum(-1, keepdim=True) > 0, -n, n)  # face the camera
    return P, n


def shade(albedo: Tensor, depth: Tensor, K: Tensor, lights: Tensor, colors: Tensor, ambient: Tensor,
          white_balance: Tensor, exposure: Tensor | None = None, blur_sigma: float = 2.0) -> Tensor:
    """Relit images (B, 3, H, W) in [0,1].

    albedo (B,3,H,W) in [0,1]; depth (B,H,W) > 0; K (B,3,3); lights (B,L,3) camera coordinates; colors (B,L,3)
    including power; ambient (B,); white_balance (B,3); exposure (B,) or None = normalise median shading to 1.
    """
    P, n = depth_normals(depth, K, blur_sigma)
    L = lights[:, :, None, None, :] - P[:, None]  # (B, L, H, W, 3)
    d2 = (L * L).sum(-1).clamp_min(1e-6)
    cos = ((L / d2.sqrt()[..., None]) * n[:, None]).sum(-1).clamp_min(0)
    direct = (colors[:, :, :, None, None] * (cos / d2)[:, :, None]).sum(1)  # (B, 3, H, W)
    shading = ambient[:, None, None, None] + direct
    if exposure is None:
        lum = shading.mean(1).flatten(1)
        exposure = 1.0 / lum.median(1).values.clamp_min(1e-6)
    out = albedo * shading * (white_balance[:, :, None, None] * exposure[:, None, None, None])
    return out.clamp(0, 1)


def sample_lights(rng: np.random.Generator, conf: dict, depth_scale: float = 1.0) -> dict:
    """Random lights (spec §9 layout, scaled by `depth_scale`), colours, ambient and colour temperature."""
    n = int(rng.integers(conf["num_lights"][0], conf["num_lights"][1] + 1))
    pos, col = [], []
    for _ in range(n):
        bx = rng.uniform(0, 3) if rng.random() < 0.5 else -rng.uniform(0, 2)
        by = float(rng.choice([1.0, 2.0]))
        bz = rng.uniform(0, 2) if rng.random() < 0.5 else -rng.uniform(0, 2)
        pos.append([bx * depth_scale, -bz * depth_scale, by * depth_scale])  # Blender (x, y fwd, z up) -> camera
        c = rng.uniform(0.5, 1.0, 3) if rng.random() < conf["colored_light_prob"] else np.full(3, 0.5)
        col.append(c / c.max() * rng.uniform(*conf["power"]) * depth_scale ** 2)
    return {"lights": np.array(pos), "colors": np.array(col), "ambient": float(rng.uniform(*conf["ambient"])),
            "temperature": float(rng.uniform(*conf["color_temperature_K"])),
            "exposure_jitter": float(rng.uniform(*conf["exposure_jitter"]))}


def relight_random(image: Tensor, depth: Tensor, K: Tensor, rng: np.random.Generator,
                   conf: dict | None = None) -> tuple[Tensor, dict]:
    """Relight one image (3, H, W) with random lights; returns the image and the JSON-able parameters."""
    conf = merge_conf(default_relight_conf, conf, "relight")
    valid = depth > 0
    scale = float(torch.quantile(depth[valid][::97].float(), 0.1)) if valid.any() else 1.0
    p = sample_lights(rng, conf, scale)
    dev, dt = image.device, torch.float32
    d = torch.where(valid, depth, torch.full_like(depth, float(depth[valid].max()) if valid.any() else 1.0))
    out = shade(image[None].float(), d[None].float(), K[None].float().to(dev),
                torch.tensor(p["lights"], dtype=dt, device=dev)[None],
                torch.tensor(p["colors"], dtype=dt, device=dev)[None],
                torch.tensor([p["ambient"]], dtype=dt, device=dev),
                torch.tensor(kelvin_to_rgb(p["temperature"]), dtype=dt, device=dev)[None],
                blur_sigma=conf["blur_sigma"])
    out = out * p["exposure_jitter"]
    return out[0].clamp(0, 1), {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in p.items()}
