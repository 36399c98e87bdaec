"""RoMa losses (spec §12) and the stage-1 feature-agreement loss on hand-computed cases."""
import math

import torch

from l2m.train.losses import (anchor_targets, feature_agreement_loss, gm_cls_loss, robust_regression_loss,
                              roma_loss)


def _grid(h, w):
    y = -1 + (2 * torch.arange(h) + 1) / h
    x = -1 + (2 * torch.arange(w) + 1) / w
    gy, gx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([gx, gy], -1)


def test_anchor_targets_are_nearest_anchor_row_major():
    x2 = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1 + 3 / 64, -1 + 1 / 64], [0.001, -0.001]])
    t = anchor_targets(x2, 4096)
    assert t.tolist() == [0, 4095, 1, 31 * 64 + 32]
    # agrees with brute-force nearest anchor centre
    pts = torch.rand(200, 2) * 2 - 1
    anchors = _grid(64, 64).reshape(-1, 2)
    assert torch.equal(anchor_targets(pts, 4096), torch.cdist(pts, anchors).argmin(1))


def test_robust_regression_minimum_and_value():
    x2 = _grid(4, 4)[None].repeat(2, 1, 1, 1)
    prob = torch.ones(2, 4, 4)
    flow = x2.permute(0, 3, 1, 2).clone().requires_grad_(True)
    cert = torch.full((2, 1, 4, 4), 20.0)
    r = robust_regression_loss(flow, cert, x2, prob, level=8)
    c = 1e-4 * 8
    assert math.isclose(float(r["regression"]), c ** 0.5, rel_tol=1e-6)  # EPE = 0 -> c^a
    off = flow.detach() + torch.tensor([0.003, 0.004]).view(1, 2, 1, 1)  # EPE = 0.005
    r2 = robust_regression_loss(off, cert, x2, prob, level=8)
    assert math.isclose(float(r2["regression"]), c ** 0.5 * ((0.005 / c) ** 2 + 1) ** 0.25, rel_tol=1e-5)
    assert float(r2["certainty"]) < 1e-8  # logit 20 vs target 1


def test_no_valid_pixel_gives_zero_but_keeps_graph():
    x2 = torch.zeros(1, 2, 2, 2)
    flow = torch.randn(1, 2, 2, 2, requires_grad=True)
    cert = torch.zeros(1, 1, 2, 2, requires_grad=True)
    r = robust_regression_loss(flow, cert, x2, torch.zeros(1, 2, 2), level=1)
    assert float(r["regression"]) == 0.0 and r["regression"].requires_grad
    r["total"].backward()
    assert flow.grad is not None and float(flow.grad.abs().sum()) == 0.0
    logits = torch.randn(1, 16, 2, 2, requires_grad=True)
    g = gm_cls_loss(logits, cert, x2, torch.zeros(1, 2, 2))
    assert float(g["gm_cls"]) == 0.0 and g["gm_cls"].requires_grad


def test_gm_cls_loss_is_cross_entropy_of_the_right_anchor():
    x2 = _grid(2, 2)[None]
    target = anchor_targets(x2, 16)
    logits = torch.zeros(1, 16, 2, 2)
    logits.scatter_(1, target[:, None], 10.0)
    g = gm_cls_loss(logits, torch.zeros(1, 1, 2, 2), x2, torch.ones(1, 2, 2))
    expect = -math.log(math.exp(10) / (math.exp(10) + 15))
    assert math.isclose(float(g["gm_cls"]), expect, rel_tol=1e-3)
    assert math.isclose(float(g["gm_certainty"]), math.log(2), rel_tol=1e-5)
    assert math.isclose(float(g["total"]), expect + 0.01 * math.log(2), rel_tol=1e-3)


def test_roma_loss_levels_and_local_mask():
    B = 1
    corr, gt = {}, {}
    for lv, s in ((16, 2), (8, 4), (4, 8)):
        x2 = _grid(s, s)[None]
        corr[lv] = {"flow": x2.permute(0, 3, 1, 2).clone(), "certainty": torch.zeros(B, 1, s, s)}
        gt[lv] = (x2, torch.ones(B, s, s))
    corr[16]["gm_cls"] = torch.zeros(B, 16, 2, 2)
    corr[16]["gm_certainty"] = torch.zeros(B, 1, 2, 2)
    out = roma_loss(corr, gt)
    assert set(out) >= {"gm_cls_16", "regression_16", "regression_8", "regression_4", "total"}
    assert math.isclose(float(out["gm_cls_16"]), math.log(16), rel_tol=1e-5)
    # a bad coarse flow masks the next level locally: level-8 regression falls back to 0 (no valid pixel)
    corr[16]["flow"] = corr[16]["flow"] + 0.5
    out2 = roma_loss(corr, gt)
    assert float(out2["regression_8"]) == 0.0
    # and the level-8 certainty target becomes 0 (BCE of logit 0 is log 2 either way)
    assert math.isclose(float(out2["certainty_8"]), math.log(2), rel_tol=1e-5)
    total = sum(float(out[k]) for k in out if k.startswith("regression")) + float(out["gm_cls_16"]) \
        + 0.01 * sum(float(out[k]) for k in out if "certainty" in k)
    assert math.isclose(float(out["total"]), total, rel_tol=1e-5)


def test_feature_agreement_loss():
    a = torch.randn(2, 8, 3, 3)
    m = torch.ones(2, 3, 3, dtype=torch.bool)
    assert float(feature_agreement_loss(a, a, m)["total"]) == 0.0
    b = a + 0.5
    m[1] = False
    r = feature_agreement_loss(a, b, m, l1_weight=1.0, cos_weight=0.0)
    assert math.isclose(float(r["feat_l1"]), 0.5, rel_tol=1e-6)
    b[1] = 100.0  # masked-out sample does not count
    assert math.isclose(float(feature_agreement_loss(a, b, m)["feat_l1"]), 0.5, rel_tol=1e-6)
    assert math.isclose(float(feature_agreement_loss(a, 2 * a, m, 0.0, 1.0)["total"]), 0.0, abs_tol=1e-6)


def test_sparse_roma_loss_reads_each_level_at_the_points():
    from l2m.train.losses import sparse_roma_loss

    corr = {}
    for lv, s in ((16, 4), (4, 16)):  # the flow of a 0.1 shift in x at every level
        x2 = _grid(s, s)[None] + torch.tensor([0.1, 0.0])
        corr[lv] = {"flow": x2.permute(0, 3, 1, 2).clone(), "certainty": torch.full((1, 1, s, s), 3.0)}
    corr[16]["gm_cls"] = torch.zeros(1, 16, 4, 4)
    corr[16]["gm_certainty"] = torch.zeros(1, 1, 4, 4)
    x1 = torch.tensor([[[-0.5, -0.5], [0.25, 0.5], [0.0, 0.0]]])
    valid = torch.tensor([[True, True, False]])  # the third point is padding
    out = sparse_roma_loss(corr, x1, x1 + torch.tensor([0.1, 0.0]), valid)
    cs16, cs4 = 1e-4 * 16, 1e-4 * 4
    assert math.isclose(float(out["regression_16"]), cs16 ** 0.5, rel_tol=1e-3)  # EPE 0: the minimum c^a
    assert math.isclose(float(out["regression_4"]), cs4 ** 0.5, rel_tol=1e-3)
    assert math.isclose(float(out["gm_cls_16"]), math.log(16), rel_tol=1e-5)
    assert math.isclose(float(out["certainty_4"]), math.log(1 + math.exp(-3)), rel_tol=1e-4)  # target 1
    # targets 0.2 off: each regression grows, and the local mask drops the level-4 points (target 0)
    off = sparse_roma_loss(corr, x1, x1 + torch.tensor([0.3, 0.0]), valid)
    assert float(off["regression_16"]) > 10 * float(out["regression_16"])
    assert float(off["regression_4"]) == 0.0
    assert math.isclose(float(off["certainty_4"]), math.log(1 + math.exp(3)), rel_tol=1e-4)  # target 0
    # padding is never read: moving the padded point changes nothing
    x1b = x1.clone()
    x1b[0, 2] = torch.tensor([0.9, -0.9])
    again = sparse_roma_loss(corr, x1b, x1b + torch.tensor([0.1, 0.0]), valid)
    assert float(again["total"]) == float(out["total"])
