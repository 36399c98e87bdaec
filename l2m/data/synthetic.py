"""Synthetic stage-2 pairs as torch Datasets: generated on the fly (seeded) or read from a generated folder.

Folder format (written by `write_sample`, `pipelines/generate_data.py`; see docs/synthetic_data.md):

    OUT/
      conf.json                 resolved generation config
      samples.txt               one sample directory name per line (the dataset order)
      skipped.txt               "<image name>\t<reason>" for every image that could not be used
      <stem>__v<k>/             one sample = one pair (k = 0 .. views_per_image-1)
        image_A.png image_B.png RGB uint8, size x size (A = source crop, B = rendered + inpainted novel view)
        geometry.npz            depth_A, depth_B float32 (z, 0 = invalid: sky, holes, inpainted pixels),
                                hole_B, sky_A, sky_B bool masks
        meta.json               K_A, K_B (3x3 pixels, pixel centres at j+0.5), T_AtoB (4x4, X_B = R X_A + t),
                                source image name, seed, focal, pose parameters, relighting, hole fraction

Ground-truth correspondences are not stored: they follow exactly from depth, K and T (`l2m.data.correspondence`),
which is the compact form (8 bytes per pixel for both directions). `pack_warp` stores a warp if one is wanted.

Training dicts (both datasets): image_A/image_B (3,H,W float in [0,1]), depth_A/depth_B (H,W, 0 = invalid),
K_A/K_B (3,3 pixels of that resolution), T_AtoB (4,4), valid_A/valid_B, sky_A/sky_B (H,W bool), and optionally
warp_AtoB/valid_AtoB/warp_BtoA/valid_BtoA at `gt_resolution` (normalised coordinates, spec §4).
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from l2m.data.correspondence import normalized_grid, sample_depth, symmetric_gt_warp, to_pixels
from l2m.data.engine import PairGenerator

DISPARITY_SUFFIXES = (".npy", ".png")


def load_disparity(path: Path) -> np.ndarray:
    """Read a disparity/depth map: .npy (float, (H,W) or (H,W,1)) or 16-bit/8-bit single-channel .png."""
    path = Path(path)
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    elif path.suffix == ".png":
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ValueError(f"Cannot read disparity {path}: not a readable PNG; re-export it as 16-bit PNG or .npy")
    else:
        raise ValueError(f"Disparity {path}: unsupported suffix {path.suffix}; use .npy or 16-bit .png")
    arr = np.asarray(arr, np.float32)
    if arr.ndim == 3:
        if arr.shape[-1] != 1 and not np.allclose(arr[..., 0], arr[..., -1]):
            raise ValueError(f"Disparity {path} has {arr.shape[-1]} different channels; expected one")
        arr = arr[..., 0]
    if arr.ndim != 2 or min(arr.shape) < 2:
        raise ValueError(f"Disparity {path} has shape {arr.shape}; expected (H, W)")
    if not np.isfinite(arr).any() or np.nanmax(arr) <= np.nanmin(arr):
        raise ValueError(f"Disparity {path} is constant or empty; it cannot give depth")
    return arr


def find_disparity(disparity_dir: Path | None, name: str) -> Path | None:
    """`<dir>/<name without suffix>.npy|.png`, or the flat `<dir>/<stem>.npy|.png`; None if there is none."""
    if disparity_dir is None:
        return None
    rel = Path(name).with_suffix("")
    for base in (rel, Path(rel.name)):
        for suf in DISPARITY_SUFFIXES:
            p = Path(disparity_dir) / (base.as_posix() + suf)
            if p.is_file():
                return p
    return None


def sample_name(image_name: str, view: int) -> str:
    """Folder name of view `view` of an image: path separators and dots become '_'."""
    stem = Path(image_name).with_suffix("").as_posix().replace("/", "__").replace(".", "_")
    return f"{stem}__v{view}"


def resize_depth(depth: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """Resample a depth map (H,W; 0 = invalid) at the pixel centres of out_hw (inverse-depth bilinear)."""
    H, W = depth.shape
    if (H, W) == tuple(out_hw):
        return depth
    xy = to_pixels(normalized_grid(*out_hw, dtype=torch.float64), H, W).reshape(1, -1, 2)
    return sample_depth(depth[None].double(), xy).reshape(out_hw).float()


def to_training_dict(pair: dict, resolution: tuple[int, int] | None = None,
                     gt_resolution: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
    """Numpy pair (engine output or folder read) -> tensors at `resolution` (H, W), K scaled accordingly."""
    H, W = pair["image_A"].shape[:2]
    h, w = resolution or (H, W)
    out: dict[str, Any] = {}
    S = np.diag([w / W, h / H, 1.0])
    for k in ("A", "B"):
        img = pair[f"image_{k}"]
        if (h, w) != (H, W):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if h < H else cv2.INTER_LINEAR)
        out[f"image_{k}"] = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255
        out[f"depth_{k}"] = resize_depth(torch.from_numpy(np.asarray(pair[f"depth_{k}"], np.float32)), (h, w))
        out[f"valid_{k}"] = out[f"depth_{k}"] > 0
        sky = np.asarray(pair[f"sky_{k}"], np.uint8)
        if (h, w) != (H, W):
            sky = cv2.resize(sky, (w, h), interpolation=cv2.INTER_NEAREST)
        out[f"sky_{k}"] = torch.from_numpy(sky.astype(bool))
        out[f"K_{k}"] = torch.from_numpy(S @ np.asarray(pair[f"K_{k}"], np.float64)).float()
    out["T_AtoB"] = torch.from_numpy(np.asarray(pair["T_AtoB"], np.float64)).float()
    if gt_resolution is not None:
        out.update(symmetric_gt_warp(out, gt_resolution))
    return out


def write_sample(out_dir: Path, name: str, pair: dict, extra_meta: dict | None = None) -> Path:
    """Write one pair as `out_dir/name/` atomically (temporary folder, then rename)."""
    final = Path(out_dir) / name
    tmp = Path(out_dir) / f".{name}.tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for k in ("A", "B"):
        if not cv2.imwrite(str(tmp / f"image_{k}.png"), cv2.cvtColor(pair[f"image_{k}"], cv2.COLOR_RGB2BGR)):
            raise OSError(f"Could not write {tmp / f'image_{k}.png'}; check disk space and permissions")
    np.savez_compressed(tmp / "geometry.npz", depth_A=pair["depth_A"].astype(np.float32),
                        depth_B=pair["depth_B"].astype(np.float32), hole_B=pair["hole_B"],
                        sky_A=pair["sky_A"], sky_B=pair["sky_B"])
    meta = dict(pair.get("meta", {}), **(extra_meta or {}))
    meta.update(K_A=np.asarray(pair["K_A"]).tolist(), K_B=np.asarray(pair["K_B"]).tolist(),
                T_AtoB=np.asarray(pair["T_AtoB"]).tolist())
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def read_sample(sample_dir: Path) -> dict:
    """Read a sample folder back into the numpy pair layout of `generate_pair` (with "meta")."""
    d = Path(sample_dir)
    pair: dict[str, Any] = {}
    for k in ("A", "B"):
        img = cv2.imread(str(d / f"image_{k}.png"), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"Sample {d}: image_{k}.png is missing or unreadable; regenerate the sample")
        pair[f"image_{k}"] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    with np.load(d / "geometry.npz") as g:
        for key in ("depth_A", "depth_B", "hole_B", "sky_A", "sky_B"):
            pair[key] = g[key]
    meta = json.loads((d / "meta.json").read_text())
    for key in ("K_A", "K_B", "T_AtoB"):
        pair[key] = np.asarray(meta.pop(key), np.float64)
    pair["valid_A"], pair["valid_B"] = pair["depth_A"] > 0, pair["depth_B"] > 0
    pair["meta"] = meta
    return pair


class FolderPairs(Dataset):
    """Pairs from a generated folder (see the module docstring), as training dicts at `resolution`."""

    def __init__(self, root: Path, resolution: tuple[int, int] | None = None,
                 gt_resolution: tuple[int, int] | None = None):
        self.root = Path(root)
        index = self.root / "samples.txt"
        if not index.is_file():
            raise FileNotFoundError(f"{index} not found: {self.root} is not a generated synthetic dataset "
                                    "(run pipelines/generate_data.py first)")
        self.names = [n for n in index.read_text().split("\n") if n.strip()]
        self.resolution, self.gt_resolution = resolution, gt_resolution

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, idx: int) -> dict:
        pair = read_sample(self.root / self.names[idx])
        out = to_training_dict(pair, self.resolution, self.gt_resolution)
        out["name"] = self.names[idx]
        return out


class SyntheticPairs(Dataset):
    """Pairs generated on the fly from a list of photos; sample idx is image idx // views, view idx % views.

    Reproducible: sample idx always comes from np.random.default_rng([seed, image index, view]), whatever the
    worker. Disparity maps are looked up in `disparity_dir` (see `find_disparity`); without one, the configured
    pseudo-depth is used. An unreadable image is replaced by the next readable one (with a warning).
    """

    def __init__(self, images: Sequence[Path] | Path, disparity_dir: Path | None = None, conf: dict | None = None,
                 views_per_image: int = 1, seed: int = 0, resolution: tuple[int, int] | None = None,
                 gt_resolution: tuple[int, int] | None = None, image_root: Path | None = None):
        if isinstance(images, (str, Path)):
            from l2m.images import list_images
            image_root = Path(images)
            names, _ = list_images(image_root)
            images = [image_root / n for n in names]
        self.images = [Path(p) for p in images]
        if not self.images:
            raise ValueError("SyntheticPairs: no images given")
        self.image_root = image_root
        self.disparity_dir = Path(disparity_dir) if disparity_dir else None
        if resolution is not None and resolution[0] == resolution[1] and "size" not in (conf or {}):
            conf = dict(conf or {}, size=int(resolution[0]))  # generate at the training size: much faster
        self.conf, self.views, self.seed = conf, int(views_per_image), int(seed)
        self.resolution, self.gt_resolution = resolution, gt_resolution
        self._gen: PairGenerator | None = None

    @property
    def generator(self) -> PairGenerator:
        if self._gen is None:  # built lazily so that each DataLoader worker has its own
            self._gen = PairGenerator(self.conf)
        return self._gen

    def __len__(self) -> int:
        return len(self.images) * self.views

    def _name(self, path: Path) -> str:
        return path.relative_to(self.image_root).as_posix() if self.image_root else path.name

    def raw(self, idx: int) -> dict:
        """The numpy pair of sample idx (engine layout, with "meta")."""
        from l2m.images import ImageReadError, read_image
        i, v = divmod(int(idx), self.views)
        for k in range(len(self.images)):
            path = self.images[(i + k) % len(self.images)]
            try:
                image = read_image(path)
                dpath = find_disparity(self.disparity_dir, self._name(path))
                disp = load_disparity(dpath) if dpath is not None else None
                break
            except (ImageReadError, ValueError) as e:
                warnings.warn(f"SyntheticPairs: skipping {path}: {e}")
        else:
            raise RuntimeError("SyntheticPairs: none of the images is readable")
        rng = np.random.default_rng([self.seed, (i + k) % len(self.images), v])
        pair = self.generator(image, disp, rng)
        pair["meta"].update(source=self._name(path), view=v, seed=self.seed)
        return pair

    def __getitem__(self, idx: int) -> dict:
        pair = self.raw(idx)
        out = to_training_dict(pair, self.resolution, self.gt_resolution)
        out["name"] = sample_name(pair["meta"]["source"], pair["meta"]["view"])
        return out
