"""Stage 2: pair flipping keeps the ground truth consistent; validation metrics on a perfect matcher."""
import torch
from torch import nn
from torch.utils.data import default_collate

from l2m.data.correspondence import gt_warp
from l2m.train.stage2 import Stage2Model, flip_pairs, stage2_metrics


def _gt(b, hw=(32, 32)):
    return gt_warp(b["depth_A"], b["depth_B"], b["K_A"], b["K_B"], b["T_AtoB"], out_hw=hw)


def test_flipping_both_views_mirrors_the_ground_truth(plane_pairs):
    b = default_collate([plane_pairs(2, 64)[i] for i in range(2)])
    b["K_A"][:, 0, 2] += 3.0  # off-centre principal point: the flip must move it
    b["K_B"][:, 0, 2] -= 2.0
    w, v = _gt(b)
    f = flip_pairs(b, torch.tensor([True, False]))
    wf, vf = _gt(f)
    assert torch.equal(vf[1], v[1]) and torch.allclose(wf[1], w[1])
    # sample 0: valid mask mirrored, target x mirrored (normalised: x -> -x), y unchanged
    assert (vf[0] != v[0].flip(-1)).float().mean() < 0.01
    both = vf[0] & v[0].flip(-1)
    mirrored = w[0].flip(1) * torch.tensor([-1.0, 1.0])
    assert both.sum() > 500 and (wf[0][both] - mirrored[both]).abs().max() < 1e-4


class _Oracle(nn.Module):
    """Returns the ground-truth flow at every level (what a perfect decoder would output)."""

    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def forward(self, inputs):
        out = {}
        for lv in (16, 8, 1):
            s = 64 // lv
            w, v = _gt(self.batch, (s, s))
            out[lv] = {"flow": w.permute(0, 3, 1, 2), "certainty": (v.float() * 20 - 10)[:, None]}
        return out


def test_metrics_of_a_perfect_matcher(plane_pairs):
    b = default_collate([plane_pairs(2, 64)[i] for i in range(2)])
    model = Stage2Model(_Oracle(b), {"hflip": 0.0})
    m = stage2_metrics(model, b)
    assert m["epe_px_fine"][1] > 1000 and m["epe_px_fine"][0] / m["epe_px_fine"][1] < 1e-4
    assert m["pck1"][0] == m["pck1"][1] and m["cert_acc"][0] == m["cert_acc"][1]
    losses = model(b)
    assert float(losses["regression_1"]) < 1.1 * (1e-4) ** 0.5  # robust loss at its minimum c^a


class _Shift(nn.Module):
    """Flow of image A shifted by a learnable x offset at levels 16 and 4 (certainty logits 0)."""

    def __init__(self):
        super().__init__()
        self.dx = nn.Parameter(torch.tensor(0.05))

    def forward(self, inputs):
        B = inputs["im_A"].shape[0]
        out = {}
        for lv, s in ((16, 4), (4, 16)):
            y = -1 + (2 * torch.arange(s) + 1) / s
            gy, gx = torch.meshgrid(y, y, indexing="ij")
            flow = torch.stack([gx + self.dx, gy])[None].expand(B, -1, -1, -1)
            out[lv] = {"flow": flow, "certainty": torch.zeros(B, 1, s, s) + 0 * self.dx}
        return out


def test_mixed_batch_splits_dense_and_sparse_losses(plane_pairs):
    from l2m.train.losses import roma_loss, sparse_roma_loss

    b = default_collate([plane_pairs(2, 64)[i] for i in range(2)])
    pts = torch.rand(2, 8, 2) * 1.6 - 0.8
    b.update(sparse_A=pts, sparse_B=pts, sparse_valid=torch.ones(2, 8, dtype=torch.bool),
             dense=torch.tensor([True, False]))
    model = Stage2Model(_Shift(), {"hflip": 0.0, "sparse_weight": 2.0})
    out = model(b)
    assert {"regression_16", "sparse_regression_16", "sparse_certainty_4"} <= set(out)
    corr = model.matcher(model._inputs(b))
    one = lambda i: {lv: {k: t[i:i + 1] for k, t in c.items()} for lv, c in corr.items()}  # noqa: E731
    dense = roma_loss(one(0), model._dense_gt({k: t[:1] for k, t in b.items()}, one(0)))["total"]
    sparse = sparse_roma_loss(one(1), pts[1:], pts[1:], b["sparse_valid"][1:])["total"]
    assert torch.allclose(out["total"], (dense + 2.0 * sparse) / 2, rtol=1e-5)
    out["total"].backward()
    assert model.matcher.dx.grad is not None and float(model.matcher.dx.grad) > 0  # pushes dx back to 0
    # an all-dense batch with the flag is the plain dense loss
    b["dense"] = torch.tensor([True, True])
    plain = {k: v for k, v in b.items() if not k.startswith("sparse") and k != "dense"}
    assert torch.allclose(model(b)["total"], model(plain)["total"], rtol=1e-6)


def test_flip_mirrors_sparse_points(plane_pairs):
    b = default_collate([plane_pairs(2, 64)[i] for i in range(2)])
    pts = torch.rand(2, 5, 2) * 2 - 1
    b.update(sparse_A=pts, sparse_B=pts + 0.1)
    f = flip_pairs(b, torch.tensor([True, False]))
    assert torch.equal(f["sparse_A"][0], pts[0] * torch.tensor([-1.0, 1.0]))
    assert torch.equal(f["sparse_B"][1], pts[1] + 0.1) and torch.equal(b["sparse_A"], pts)
