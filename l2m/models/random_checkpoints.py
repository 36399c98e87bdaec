"""Random weights written in the official L2M file formats: try the official-weights path without the files.

``python -m l2m.models.random_checkpoints --variant l2m++ --format v2 --output DIR`` writes, under the official
file names (so that ``L2M_HOME=DIR/..`` or ``--weights`` finds them):

| format | matcher file | content |
|---|---|---|
| ``flat`` | ``l2m++_560x560.pth`` | the 603-key state dict (the released "v1" file) |
| ``model`` | ``l2m++_560x560.pth`` | ``{"model": state dict}`` |
| ``v2`` | ``l2m++_560x560v2.pth.ckpt`` | ``{"state_dict": {"model.<key>": ...}}`` (trainer checkpoint) |

and the coarse encoder: ``dinov2l_distilled.pth`` (facebookresearch/dinov2 keys, ``mask_token`` included) for
l2m++, ``l2m_vit_base.pth`` (FiT3D ``{"model": {"model.<key>": ...}}``) for l2m-vitb. The matches they give are
meaningless: this is for plumbing tests (reconstruct, hloc, benchmarks) and for checking a set-up.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from .zoo import VARIANTS, build_model

FORMATS = ("flat", "model", "v2")


def _atomic_save(obj, path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path


def write_random_checkpoints(variant: str, folder: str | os.PathLike, fmt: str = "flat",
                             seed: int = 0) -> dict[str, Path]:
    """Write a random matcher + coarse-encoder pair of `variant` (l2m++ or l2m-vitb) in `fmt` into `folder`.

    BatchNorm running statistics are drawn too (means in ±0.1, variances in [0.5, 1.5]) so that eval-mode
    outputs are not degenerate. Returns {"weights": matcher file, "coarse_weights": encoder file}.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Unknown checkpoint format {fmt!r}; choose one of {', '.join(FORMATS)}")
    v = VARIANTS.get(variant)
    if v is None or v.backbone != "vit+vgg":
        raise ValueError(f"Random official-format files exist for l2m++ and l2m-vitb, not {variant!r}")
    torch.manual_seed(seed)
    model = build_model(variant, weights="random")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    state = model.state_dict()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = v.weights
    if fmt == "flat":
        matcher = _atomic_save(state, folder / names[0])
    elif fmt == "model":
        matcher = _atomic_save({"model": state, "epoch": 0}, folder / names[0])
    else:
        name = names[1] if len(names) > 1 else names[0]
        matcher = _atomic_save({"state_dict": {f"model.{k}": t for k, t in state.items()}, "global_step": 0},
                               folder / name)
    vit = model.coarse_encoder.vit.state_dict()
    if variant == "l2m++":  # facebookresearch/dinov2 layout: timm keys + mask_token
        coarse = {**vit, "mask_token": torch.zeros(1, vit["cls_token"].shape[-1])}
    else:  # FiT3D fine-tune layout
        coarse = {"model": {f"model.{k}": t for k, t in vit.items()}, "epoch": 0}
    return {"weights": matcher, "coarse_weights": _atomic_save(coarse, folder / v.coarse_weights)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write random L2M weights in the official file formats.")
    parser.add_argument("--variant", default="l2m++", choices=[n for n, v in VARIANTS.items()
                                                              if v.backbone == "vit+vgg"])
    parser.add_argument("--format", default="flat", choices=FORMATS)
    parser.add_argument("--output", type=Path, required=True, help="folder (e.g. $L2M_HOME/checkpoints)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for role, path in write_random_checkpoints(args.variant, args.output, args.format, args.seed).items():
        print(f"{role}: {path} ({path.stat().st_size / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
