"""Training / held-back validation pair datasets for both stages, built from the data engine (l2m.data).

`kind="synthetic"`: pairs generated on the fly from a folder of photos (l2m.data.synthetic.SyntheticPairs);
every `len/val_images`-th photo is held back for validation (never seen in training) and rendered with another
seed. `kind="folder"`: a folder written by pipelines/generate_data.py (FolderPairs); `val_folder` gives the held
back set (else the last `val_images` samples are held back). `sfm`: real pairs with sparse correspondences
from COLMAP reconstructions (l2m.data.sfm_pairs) are mixed into the training set (`sfm_fraction`); the
validation set stays dense-GT.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch.utils.data import Dataset, Subset

from ..config import merge_conf

default_conf: dict[str, Any] = {
    "kind": "synthetic",        # synthetic | folder
    "images": None,             # synthetic: folder of photos
    "disparity_dir": None,      # synthetic: <stem>.npy/.png disparities (else the engine's pseudo-depth)
    "folder": None,             # folder: generated dataset root
    "val_folder": None,
    "engine": {},               # l2m.data.engine conf (size, pose ranges, inpainter, relight, sky, ...)
    "views_per_image": 4,
    "val_images": 16,
    "seed": 0,
    "sfm": [],                  # real pairs (l2m.data.sfm_pairs): [{"images": DIR, "model": COLMAP model DIR}
                                # (covisible 3D points) or {"images": DIR, "database": FILE} (verified matches)]
    "sfm_fraction": 0.5,        # share of real pairs among the training samples when `sfm` is given
    "sfm_min_points": 50,       # covisible 3D points / verified matches for a pair to be used
    "sfm_max_points": 1024,     # correspondences per sample (padded)
}

# the keys the training steps use (drops names / optional warps so default_collate is cheap and uniform)
KEYS = ("image_A", "image_B", "depth_A", "depth_B", "K_A", "K_B", "T_AtoB")


class _Mixed(Dataset):
    """Dense-GT samples then sparse real pairs, in one uniform layout (`dense` flag; dummies for the other
    kind's keys, never read by the loss: see Stage2Model)."""

    def __init__(self, dense: Dataset, sparse: Dataset, resolution: tuple[int, int], max_points: int):
        self.dense, self.sparse = dense, sparse
        self.resolution, self.max_points = tuple(resolution), int(max_points)

    def __len__(self) -> int:
        return len(self.dense) + len(self.sparse)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        H, W = self.resolution
        if i < len(self.dense):
            item = dict(self.dense[i])
            item.update(sparse_A=torch.zeros(self.max_points, 2), sparse_B=torch.zeros(self.max_points, 2),
                        sparse_valid=torch.zeros(self.max_points, dtype=torch.bool), dense=torch.tensor(True))
            return item
        item = dict(self.sparse[i - len(self.dense)])
        eye = torch.eye(3)
        item.update(depth_A=torch.zeros(H, W), depth_B=torch.zeros(H, W), K_A=eye, K_B=eye.clone(),
                    T_AtoB=torch.eye(4), dense=torch.tensor(False))
        return item


def sfm_dataset(conf: Mapping[str, Any], resolution: tuple[int, int], n_dense: int) -> Dataset:
    """Real pairs of every `conf["sfm"]` reconstruction, repeated so they make `sfm_fraction` of the samples."""
    from ..data.sfm_pairs import SfmPairs, source_pairs

    pairs = [p for entry in conf["sfm"] for p in source_pairs(entry, int(conf["sfm_min_points"]))]
    frac = float(conf["sfm_fraction"])
    if not 0 < frac < 1:
        raise ValueError(f"data.sfm_fraction must be in (0, 1), got {frac}")
    repeats = max(1, round(n_dense * frac / (1 - frac) / max(len(pairs), 1)))
    return SfmPairs(pairs, resolution, repeats=repeats, seed=int(conf["seed"]),
                    max_points=int(conf["sfm_max_points"]))


class _Select(Dataset):
    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = self.base[i]
        return {k: item[k] for k in KEYS}


def build_pair_datasets(conf: Mapping[str, Any] | None, resolution: tuple[int, int]) -> tuple[Dataset, Dataset]:
    """(train, val) datasets of training dicts at `resolution` (H, W); see the module docstring."""
    conf = merge_conf(default_conf, conf, "data")
    from ..data.synthetic import FolderPairs, SyntheticPairs

    if conf["kind"] == "synthetic":
        if not conf["images"]:
            raise ValueError("data.images is required for data.kind=synthetic (a folder of photos)")
        from l2m.images import list_images
        root = Path(conf["images"])
        if not root.is_dir():
            raise FileNotFoundError(f"data.images={root} is not a folder of photos")
        names, _ = list_images(root)
        paths = [root / n for n in sorted(names)]
        n_val = min(int(conf["val_images"]), max(len(paths) - 1, 0))
        step = len(paths) / n_val if n_val else 0
        val_set = {int(i * step) for i in range(n_val)}
        train_p = [p for i, p in enumerate(paths) if i not in val_set]
        val_p = [p for i, p in enumerate(paths) if i in val_set]
        common = dict(disparity_dir=conf["disparity_dir"], conf=conf["engine"], resolution=tuple(resolution),
                      image_root=root)
        train = SyntheticPairs(train_p, views_per_image=conf["views_per_image"], seed=conf["seed"], **common)
        val = SyntheticPairs(val_p or train_p[:1], views_per_image=1, seed=conf["seed"] + 7919, **common)
    elif conf["kind"] == "folder":
        if not conf["folder"]:
            raise ValueError("data.folder is required for data.kind=folder (run pipelines/generate_data.py)")
        full = FolderPairs(Path(conf["folder"]), resolution=tuple(resolution))
        if conf["val_folder"]:
            train, val = full, FolderPairs(Path(conf["val_folder"]), resolution=tuple(resolution))
        else:
            n_val = min(int(conf["val_images"]), len(full) - 1)
            train, val = Subset(full, range(len(full) - n_val)), Subset(full, range(len(full) - n_val, len(full)))
    else:
        raise ValueError(f"data.kind must be 'synthetic' or 'folder', got {conf['kind']!r}")
    train, val = _Select(train), _Select(val)
    if conf["sfm"]:
        train = _Mixed(train, sfm_dataset(conf, resolution, len(train)), resolution, conf["sfm_max_points"])
    return train, val
