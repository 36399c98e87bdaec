"""The L2M dense matcher: training forward, inference ``match``, sampling, keypoint matching, feature cache.

Training (stage 2): ``model(batch)`` with ``batch = {"im_A": (B,3,H,W), "im_B": (B,3,H,W)}`` (already resized,
normalised as wanted, H, W multiples of ``model.res_multiple``) returns the decoder's per-level dict
``{level: {"flow", "certainty", "flow_pre_delta", "delta_flow", (coarsest:) "gm_cls", "gm_certainty"}}`` for A->B
(``symmetric=True`` adds B->A as the second half of the batch). ``attenuate_cert`` never applies there.

Inference: ``model.match(image_a, image_b, name_a=None, name_b=None) -> MatchOutput`` with, symmetric:
``warp`` (H, 2W, 4) and ``certainty`` (H, 2W) at upsample_res (or coarse_res without pass 2) and
``warp_coarse`` / ``certainty_coarse`` at coarse_res. Left half column u: (x_A, y_A) = A's grid, (x_B, y_B) =
A->B prediction; right half: (x_A, y_A) = B->A prediction, (x_B, y_B) = B's grid. Coordinates normalised
(pixel centres at -1 + (2i+1)/N); ``to_pixel_coordinates`` converts. Images: RGB uint8 (H, W, 3) numpy, PIL
images, file paths, or float (3, H, W) tensors in [0, 1]; numpy / PIL inputs are resized with PIL bicubic
(as upstream), tensors with antialiased bicubic interpolation.

Feature cache: with ``conf["cache_size"] > 0`` and image names given, each image's PROJECTED encoder pyramid
(per pass resolution) is kept in an LRU cache and reused for all its pairs. Encoding is always done one image
at a time, so cached and uncached outputs are identical bit for bit.

Devices: everything follows the parameters' device. On CUDA, the official precision policy: the frozen coarse
ViT is cast to fp16 and run outside autocast; the fine CNN, projections, transformer and refiner blocks run under
fp16 autocast (GP solve and refiner output convs in fp32). On the CPU everything is fp32.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import merge_conf
from .decoder import Decoder
from .gp import cell_centres
from .sampling import match_keypoints, reciprocal_sample, sample_matches, to_pixel_coordinates

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

default_conf: dict[str, Any] = {
    "coarse_res": 560,  # int (square) or [H, W]; multiple of res_multiple
    "upsample_res": 864,  # None: no second pass
    "keep_aspect": False,  # int resolutions become the pair's aspect ratio at the same area (pair_resolution)
    "coarse_levels": None,  # levels run by pass 1 (coarsest first); None: all, e.g. (16, 8, 4) when pass 2 refines
    "upsample_levels": None,  # levels run by pass 2 (finest last); None: the decoder's (8, 4, 2, 1)
    "normalize": False,  # ImageNet mean/std on the input (open question for L2M++, spec §4)
    "symmetric": True,
    "attenuate_cert": True,
    "cycle_px": None,  # symmetric only: zero the certainty where A->B->A (B->A->B) misses by more (warp pixels)
    "sample_thresh": 0.05,
    "num_samples": 10000,
    "kde_refs": "auto",  # None: exact KDE (upstream); int: subset estimate; "auto": exact on CUDA, 1024 on CPU
    "sampling": "balanced",  # "balanced": threshold-balanced KDE sampling (upstream) | "reciprocal" (symmetric only)
    "reciprocal_stride": 8,  # reciprocal: grid step in warp pixels
    "reciprocal_radius": 1.0,  # reciprocal: round trip A->B->A must return within this many warp pixels
    "reciprocal_iterations": 3,  # reciprocal: round trips followed before a point is given up
    "cache_size": 0,  # number of images whose features are cached (needs names)
    "pair_batch": 4,  # pairs decoded together in match_batch
}


@dataclass
class MatchOutput:
    """Dense result of one pair (see module docstring for the layout)."""

    warp: torch.Tensor
    certainty: torch.Tensor
    warp_coarse: torch.Tensor
    certainty_coarse: torch.Tensor
    symmetric: bool = True


class FeatureCache:
    """LRU cache of per-image projected pyramids: at most `max_items` IMAGES, each with one entry per
    (resolution, levels, normalize), so the two passes of a pair never evict each other. Keys: (name, ...)."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self.data: OrderedDict = OrderedDict()  # name -> {rest of key: features}
        self.hits = 0
        self.misses = 0

    def get(self, key):
        name, rest = key[0], key[1:]
        entry = self.data.get(name)
        if entry is not None and rest in entry:
            self.data.move_to_end(name)
            self.hits += 1
            return entry[rest]
        self.misses += 1
        return None

    def put(self, key, value) -> None:
        if self.max_items <= 0:
            return
        name, rest = key[0], key[1:]
        self.data.setdefault(name, {})[rest] = value
        self.data.move_to_end(name)
        while len(self.data) > self.max_items:
            self.data.popitem(last=False)

    def clear(self) -> None:
        self.data.clear()


def _as_hw(res) -> tuple[int, int] | None:
    if res is None:
        return None
    if isinstance(res, int):
        return (res, res)
    return (int(res[0]), int(res[1]))


def pair_resolution(res: int | Sequence[int], size_a: tuple[int, int], size_b: tuple[int, int],
                    multiple: int, keep_aspect: bool) -> tuple[int, int]:
    """Working (H, W) of a pair. [H, W] and, without keep_aspect, int (square) resolutions are used as given.
    With keep_aspect an int `res` becomes a rectangle of about res² pixels at the geometric mean of the two
    images' aspect ratios, each side rounded to `multiple` (1024×683 photos at 800: 640×992 instead of 800×800).
    """
    if not keep_aspect or not isinstance(res, int):
        return _as_hw(res)
    aspect = math.sqrt(size_a[1] / size_a[0] * size_b[1] / size_b[0])  # W / H
    side = lambda x: max(multiple, round(x / multiple) * multiple)  # noqa: E731
    return side(res / math.sqrt(aspect)), side(res * math.sqrt(aspect))


def load_image_array(image) -> np.ndarray | torch.Tensor:
    """Path / PIL / numpy -> RGB uint8 numpy (H, W, 3); tensors are returned unchanged."""
    if isinstance(image, torch.Tensor):
        return image
    if isinstance(image, (str, Path)):
        from PIL import Image, ImageOps

        with Image.open(image) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    if hasattr(image, "convert"):  # PIL
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"Expected an RGB image (H, W, 3), got shape {arr.shape}")
    return arr


def image_size(image) -> tuple[int, int]:
    """(H, W) of an image accepted by :meth:`L2M.match`."""
    image = load_image_array(image)
    return tuple(image.shape[-2:]) if isinstance(image, torch.Tensor) else tuple(image.shape[:2])


def resize_image(image, hw: tuple[int, int]) -> torch.Tensor:
    """RGB image -> (1, 3, H, W) float in [0, 1] at size hw (PIL bicubic for arrays, torch bicubic for tensors)."""
    image = load_image_array(image)
    if isinstance(image, torch.Tensor):
        x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        x = x[None] if x.ndim == 3 else x
        return F.interpolate(x, size=hw, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image.astype(np.uint8))).resize((hw[1], hw[0]), Image.BICUBIC)
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None].float() / 255.0


def cycle_error_px(fwd: torch.Tensor, bwd: torch.Tensor) -> torch.Tensor:
    """Round-trip error in pixels of the warp grid: |bwd(fwd(x)) - x| for (n, H, W, 2) normalised flows."""
    h, w = fwd.shape[1:3]
    back = F.grid_sample(bwd.permute(0, 3, 1, 2), fwd, mode="bilinear", padding_mode="border",
                         align_corners=False).permute(0, 2, 3, 1)
    d = back - cell_centres(h, w, fwd.device)
    return torch.hypot(d[..., 0] * (w / 2), d[..., 1] * (h / 2))  # .norm(dim=-1) over 2 values is ~10x slower


class L2M(nn.Module):
    """Encoder (fine CNN [+ external coarse ViT]) + decoder; see the module docstring for the API."""

    def __init__(self, encoder: nn.Module, decoder: Decoder, conf: dict | None = None,
                 variant: str = "custom", res_multiple: int = 14, upsample_multiple: int | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        object.__setattr__(self, "conf", merge_conf(default_conf, conf, "l2m"))
        object.__setattr__(self, "variant", variant)
        object.__setattr__(self, "res_multiple", res_multiple)  # coarse_res (the coarse encoder's patch grid)
        # upsample_res: the second pass runs only the fine CNN levels (no ViT), e.g. 864 for L2M++ (8 | 864, 14 ∤ 864)
        object.__setattr__(self, "upsample_multiple", upsample_multiple or res_multiple)
        object.__setattr__(self, "cache", FeatureCache(self.conf["cache_size"]))

    # ----------------------------------------------------------------------------------------------- training
    @property
    def coarse_encoder(self) -> nn.Module:
        """Coarse encoder module: ``forward(images) -> (B, C, h, w)``."""
        return self.encoder.coarse_encoder

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _autocast(self):
        dev = self.device.type
        return torch.autocast(device_type=dev, dtype=torch.float16, enabled=dev == "cuda")

    def forward(self, batch: dict[str, torch.Tensor], symmetric: bool = False,
                record_all: bool | None = None) -> dict[int, dict[str, torch.Tensor]]:
        """Training forward (pass 1 only): {level: {flow, certainty, ...}} for im_A -> im_B."""
        a, b = batch["im_A"], batch["im_B"]
        levels = self.decoder.config.levels
        with self._autocast():
            feats = self.decoder.project(self.encoder(torch.cat((a, b)), levels))
            fa = {lv: f[: len(a)] for lv, f in feats.items()}
            fb = {lv: f[len(a):] for lv, f in feats.items()}
            if symmetric:
                fa, fb = ({lv: torch.cat((fa[lv], fb[lv])) for lv in fa},
                          {lv: torch.cat((fb[lv], fa[lv])) for lv in fa})
            return self.decoder(fa, fb, record_all=record_all)

    # ---------------------------------------------------------------------------------------------- inference
    def _check_res(self, hw: tuple[int, int], what: str) -> None:
        """`what`: "coarse_res" (coarse encoder's multiple) or "upsample_res" (fine CNN's multiple)."""
        m = {"coarse_res": self.res_multiple, "upsample_res": self.upsample_multiple}[what]
        if hw[0] % m or hw[1] % m:
            raise ValueError(f"{what} {hw} must be a multiple of {m} for variant {self.variant}")

    def _features(self, image, name: str | None, hw: tuple[int, int], levels: tuple[int, ...]) -> dict:
        key = (name, hw, levels, bool(self.conf["normalize"]))
        if name is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        x = resize_image(image, hw).to(self.device)
        if self.conf["normalize"]:
            mean = torch.tensor(IMAGENET_MEAN, device=x.device)[:, None, None]
            std = torch.tensor(IMAGENET_STD, device=x.device)[:, None, None]
            x = (x - mean) / std
        with self._autocast():
            feats = self.decoder.project(self.encoder(x, levels))
        if name is not None:
            self.cache.put(key, feats)
        return feats

    def _finish(self, flow: torch.Tensor, cert: torch.Tensor, c16: torch.Tensor | None,
                symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(2n or n, 2, H, W) flow + logits -> warps (n, H, 2W or W, 4), certainties (n, H, 2W or W)."""
        h, w = flow.shape[-2:]
        cert = cert.float()
        if c16 is not None:
            low = F.interpolate(c16.float(), size=(h, w), mode="bilinear", align_corners=False)
            cert = cert - 0.5 * low.clamp(max=0)
        cert = cert.sigmoid()[:, 0]
        flow = flow.float().permute(0, 2, 3, 1)
        cert = cert.masked_fill((flow.abs() > 1).any(dim=-1), 0.0)
        flow = flow.clamp(-1, 1)
        grid = cell_centres(h, w, flow.device)[None].expand(len(flow), h, w, 2)
        if not symmetric:
            return torch.cat((grid, flow), -1), cert
        a2b, b2a = flow.chunk(2)
        g = grid[: len(a2b)]
        if self.conf["cycle_px"] is not None:
            ok = torch.cat((cycle_error_px(a2b, b2a) <= self.conf["cycle_px"],
                            cycle_error_px(b2a, a2b) <= self.conf["cycle_px"]))
            cert = cert * ok
        warp = torch.cat((torch.cat((g, a2b), -1), torch.cat((b2a, g), -1)), dim=2)
        return warp, torch.cat(cert.chunk(2), dim=2)

    @torch.no_grad()
    def match_batch(self, pairs: Sequence[tuple[Any, Any]],
                    names: Sequence[tuple[str | None, str | None]] | None = None) -> list[MatchOutput]:
        """Dense matching of several pairs; images given by `names` reuse cached features."""
        was_training = self.training
        self.eval()
        try:
            names = list(names) if names is not None else [(None, None)] * len(pairs)
            step = max(1, int(self.conf["pair_batch"]))
            outs: list[MatchOutput] = []
            chunk: list[tuple] = []  # up to `step` consecutive pairs with equal resolutions, decoded together
            chunk_names: list[tuple] = []
            key = None
            for pair, pair_names in zip(pairs, names):
                pair = tuple(load_image_array(x) for x in pair)  # files and PIL images are read once
                pair_key = self._resolutions(*pair)
                if chunk and (pair_key != key or len(chunk) == step):
                    outs += self._match_chunk(chunk, chunk_names, *key)
                    chunk, chunk_names = [], []
                chunk.append(pair)
                chunk_names.append(pair_names)
                key = pair_key
            if chunk:
                outs += self._match_chunk(chunk, chunk_names, *key)
            return outs
        finally:
            self.train(was_training)

    def match(self, image_a, image_b, name_a: str | None = None, name_b: str | None = None) -> MatchOutput:
        """Dense matching of one pair -> MatchOutput (symmetric by default)."""
        return self.match_batch([(image_a, image_b)], [(name_a, name_b)])[0]

    def _stack(self, images, names, hw, levels) -> list[dict]:
        return [self._features(im, nm, hw, levels) for im, nm in zip(images, names)]

    def _resolutions(self, image_a, image_b) -> tuple[tuple[int, int], tuple[int, int] | None]:
        """(pass-1 (H, W), pass-2 (H, W) or None) of a pair, checked against the encoders' multiples."""
        keep = bool(self.conf["keep_aspect"])
        size_a, size_b = image_size(image_a), image_size(image_b)
        hw1 = pair_resolution(self.conf["coarse_res"], size_a, size_b, self.res_multiple, keep)
        self._check_res(hw1, "coarse_res")
        if self.conf["upsample_res"] is None:
            return hw1, None
        hw2 = pair_resolution(self.conf["upsample_res"], size_a, size_b, self.upsample_multiple, keep)
        self._check_res(hw2, "upsample_res")
        return hw1, hw2

    def _match_chunk(self, pairs, names, hw1: tuple[int, int], hw2: tuple[int, int] | None) -> list[MatchOutput]:
        cfg = self.decoder.config
        symmetric = bool(self.conf["symmetric"])
        ims_a = [p[0] for p in pairs]
        ims_b = [p[1] for p in pairs]
        na = [n[0] for n in names]
        nb = [n[1] for n in names]

        def pyramids(hw, levels):
            fa = self._stack(ims_a, na, hw, levels)
            fb = self._stack(ims_b, nb, hw, levels)
            src, dst = (fa + fb, fb + fa) if symmetric else (fa, fb)
            cat = lambda fs: {lv: torch.cat([f[lv] for f in fs]) for lv in levels}  # noqa: E731
            return cat(src), cat(dst)

        levels1 = tuple(self.conf["coarse_levels"] or cfg.levels)
        pa, pb = pyramids(hw1, levels1)
        with self._autocast():
            out1 = self.decoder(pa, pb, record_all=False, levels=levels1)
        fine1 = out1[levels1[-1]]
        c16 = out1[levels1[0]]["certainty"] if self.conf["attenuate_cert"] else None
        flow1, cert1 = fine1["flow"], fine1["certainty"]
        if tuple(flow1.shape[-2:]) != hw1:  # pass 1 stopped above stride 1: coarse output resized to coarse_res
            flow1 = F.interpolate(flow1.float(), size=hw1, mode="bilinear", align_corners=False)
            cert1 = F.interpolate(cert1.float(), size=hw1, mode="bilinear", align_corners=False)
        warp_c, cert_c = self._finish(flow1, cert1, c16, symmetric)
        if hw2 is not None:
            up_levels = tuple(self.conf["upsample_levels"] or cfg.upsample_levels)
            pa, pb = pyramids(hw2, up_levels)
            s = math.sqrt(hw2[0] * hw2[1] / (hw1[0] * hw1[1]))
            with self._autocast():
                out2 = self.decoder(pa, pb, flow=fine1["flow"], certainty=fine1["certainty"], upsample=True,
                                    scale_factor=s, record_all=False, levels=up_levels)
            fine2 = out2[up_levels[-1]]
            warp, cert = self._finish(fine2["flow"], fine2["certainty"], c16, symmetric)
        else:
            warp, cert = warp_c, cert_c
        return [MatchOutput(warp[i], cert[i], warp_c[i], cert_c[i], symmetric) for i in range(len(pairs))]

    # ------------------------------------------------------------------------------------------ sparse output
    def sample(self, out: MatchOutput, num: int | None = None, threshold: float | None = None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse matches of a dense output -> ((n, 4) normalised matches (x_A, y_A, x_B, y_B), (n,) certainty).

        ``conf["sampling"]``: "balanced" (threshold-balanced, certainties above the threshold set to 1) or
        "reciprocal" (grid points whose A->B->A / B->A->B round trip returns, raw certainties; see
        ``sampling.reciprocal_sample``)."""
        num = self.conf["num_samples"] if num is None else num
        threshold = self.conf["sample_thresh"] if threshold is None else threshold
        if self.conf["sampling"] == "reciprocal":
            if not out.symmetric:
                raise ValueError("sampling='reciprocal' needs a symmetric match (conf symmetric=True)")
            return reciprocal_sample(out.warp, out.certainty, num, threshold, self.conf["reciprocal_stride"],
                                     self.conf["reciprocal_radius"], self.conf["reciprocal_iterations"],
                                     generator=generator)
        if self.conf["sampling"] != "balanced":
            raise ValueError(f"sampling={self.conf['sampling']!r}; use 'balanced' or 'reciprocal'")
        refs = self.conf["kde_refs"]
        if refs == "auto":
            refs = None if out.warp.device.type == "cuda" else 1024
        return sample_matches(out.warp, out.certainty, num, threshold, generator=generator, kde_refs=refs)

    def match_keypoints(self, x_a: torch.Tensor, x_b: torch.Tensor, out: MatchOutput,
                        max_dist: float = 0.005, cert_th: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Mutual-NN matching of normalised keypoints of A and B through the A->B warp -> (ia, ib)."""
        return match_keypoints(x_a, x_b, out.warp, out.certainty, max_dist, cert_th, symmetric=out.symmetric)

    @staticmethod
    def to_pixel_coordinates(matches: torch.Tensor, h_a: int, w_a: int, h_b: int, w_b: int,
                             hloc: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 4) normalised matches -> pixels of A and B at their ORIGINAL sizes (centre of top-left = 0.5,
        or 0 with hloc=True)."""
        return (to_pixel_coordinates(matches[:, :2], h_a, w_a, hloc),
                to_pixel_coordinates(matches[:, 2:], h_b, w_b, hloc))
