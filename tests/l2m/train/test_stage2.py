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
