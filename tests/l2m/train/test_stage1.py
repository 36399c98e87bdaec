"""Stage 1: lifting single views to feature Gaussians and the student/teacher model (ViT and XFeat encoders)."""
import torch
import torch.nn.functional as F

from l2m.train.splatter import render_gaussians
from l2m.train.stage1 import Stage1Model, build_coarse_encoder, lift_to_gaussians


def _view(H=56, W=56, z=3.0):
    K = torch.tensor([[0.6 * W, 0, W / 2], [0, 0.6 * W, H / 2], [0, 0, 1.0]])
    return torch.rand(3, H, W), torch.full((H, W), z), K


def test_lifted_gaussians_sit_on_their_pixels_and_rerender_the_features():
    img, depth, K = _view()
    depth[:, :10] = 0  # sky / unknown: no Gaussians
    feats = torch.randn(8, 4, 4)
    g = lift_to_gaussians(img, depth, K, feats, stride=2, scale=0.6)
    assert g["means"].shape[0] == 28 * 23  # 28 rows x 23 columns with depth > 0
    uv = g["means"][:, :2] / g["means"][:, 2:] * K[0, 0] + K[0, 2]
    assert torch.allclose(uv.frac(), torch.full_like(uv, 0.5), atol=1e-4)  # pixel centres j + 0.5 (stride 2: j odd)
    # footprint std in the source view = scale * stride px
    assert torch.allclose(g["scales"] * K[0, 0] / g["means"][:, 2], torch.full_like(g["scales"], 1.2))
    # re-rendering into the source view at the token grid gives back the (pooled) features where covered
    r = 2
    Kt = K.clone()
    Kt[:2] *= 4 * r / 56
    out = render_gaussians(g["means"], g["scales"], g["opacities"], g["values"][:, 3:], Kt, torch.eye(4), 4 * r, 4 * r,
                           {"low_pass": 0.3 * (4 * r / 56) ** 2})  # as Stage1Model: low-pass of the image
    rendered = F.avg_pool2d(out["values"][None], r)[0] / F.avg_pool2d(out["alpha"][None, None], r)[0]
    ok = F.avg_pool2d(out["alpha"][None, None], r)[0, 0] > 0.9
    # opaque splats point-sample the lifted feature field at the render pixels (then pooled r x r)
    ref = F.avg_pool2d(F.interpolate(feats[None], size=(4 * r, 4 * r), mode="bilinear", align_corners=False), r)[0]
    assert ok[:, 2:].all() and not ok[:, 0].any()
    assert (rendered - ref)[:, ok].abs().max() < 0.1 * ref.abs().max()


def test_stage1_with_a_vit_encoder_identity_view_has_near_zero_loss_and_gradients():
    torch.manual_seed(0)
    enc = build_coarse_encoder("vit-small")
    m = Stage1Model(enc, {"hflip": 0.0})
    img, depth, K = _view()
    batch = {"image_A": img[None], "image_B": img[None], "depth_A": depth[None], "depth_B": depth[None],
             "K_A": K[None], "K_B": K[None], "T_AtoB": torch.eye(4)[None]}
    t = m.targets(batch)
    assert t["target_B"].shape == (1, 384, 4, 4) and t["mask_B"].all()
    losses = m(batch)
    assert float(losses["source_l1"]) == 0.0  # the student starts as the teacher
    # same view: the rendered lifted teacher features are close to the teacher's own (splat = smoothing)
    rel = float(losses["feat_l1"]) / float(t["feat_A"].abs().mean())
    assert rel < 0.5, rel
    # a translated novel view costs more than the identity view
    T = torch.eye(4)
    T[0, 3] = 0.6
    moved = dict(batch, T_AtoB=T[None])
    assert float(m(moved)["feat_l1"]) > float(losses["feat_l1"])
    losses["total"].backward()
    grads = [p.grad for p in m.encoder.parameters() if p.grad is not None]
    assert grads and all(p.grad is None for p in m.teacher.parameters())


def test_splatted_novel_view_colour_matches_the_rendered_view(plane_pairs):
    from torch.utils.data import default_collate
    b = default_collate([plane_pairs(1, 64)[0]])
    m = Stage1Model(build_coarse_encoder("xfeat"), {"input_view": "splat", "stride": 1})
    t = m.targets(b)
    assert t["input_B"].shape == (1, 3, 64, 64)
    covered = b["depth_B"][0] > 0
    inner = F.max_pool2d((~covered).float()[None, None], 5, 1, 2)[0, 0] == 0  # away from the view's border
    err = (t["input_B"][0] - b["image_B"][0]).abs().mean(0)[inner]
    base = (b["image_A"][0] - b["image_B"][0]).abs().mean(0)[inner]  # not warped at all
    # measured 0.032 vs 0.055: opaque isotropic splats on a slanted plane blur (~0.8 px) and lean ~0.5 px towards
    # the nearer side (front-to-back order), which is negligible at the token grid the features are compared on
    assert inner.sum() > 2000 and float(err.mean()) < 0.04 and float(err.mean()) < 0.7 * float(base.mean()), \
        (float(err.mean()), float(base.mean()))
    assert t["mask_B"].float().mean() > 0.5
