"""The pure-torch Gaussian splatter against analytic configurations."""
import math

import pytest
import torch

from l2m.train.splatter import project_gaussians, render_gaussians

K = torch.tensor([[80.0, 0, 32], [0, 90.0, 24], [0, 0, 1]], dtype=torch.float64)
EYE = torch.eye(4, dtype=torch.float64)


def _one(x=0.13, y=-0.07, z=2.0, s=0.05, o=0.8, H=48, W=64, conf=None):
    m = torch.tensor([[x, y, z]], dtype=torch.float64)
    out = render_gaussians(m, torch.tensor([s], dtype=torch.float64), torch.tensor([o], dtype=torch.float64),
                           torch.ones(1, 1, dtype=torch.float64), K, EYE, H, W, conf)
    return out, m


def test_single_gaussian_footprint_is_the_analytic_gaussian():
    out, m = _one()
    u = 80 * 0.13 / 2 + 32  # projected centre (pixel-centre convention: pixel j at j + 0.5)
    v = 90 * -0.07 / 2 + 24
    sx, sy = math.sqrt((80 * 0.05 / 2) ** 2 + 0.3), math.sqrt((90 * 0.05 / 2) ** 2 + 0.3)
    ys, xs = torch.meshgrid(torch.arange(48, dtype=torch.float64) + 0.5, torch.arange(64, dtype=torch.float64) + 0.5,
                            indexing="ij")
    expect = 0.8 * torch.exp(-0.5 * ((xs - u) ** 2 / sx ** 2 + (ys - v) ** 2 / sy ** 2))
    inside = ((xs - u).abs() <= 3 * sx) & ((ys - v).abs() <= 3 * sy)  # per-axis 3-sigma cut-off
    assert torch.allclose(out["alpha"], expect * inside, atol=1e-12)
    assert float(out["alpha"].max()) <= 0.8 + 1e-12
    # the footprint's first and second moments give back the analytic centre and sigmas
    a = out["alpha"]
    mx, my = float((a * xs).sum() / a.sum()), float((a * ys).sum() / a.sum())
    assert abs(mx - u) < 0.02 and abs(my - v) < 0.02  # discrete, 3-sigma-truncated moments
    assert abs(math.sqrt(float((a * (xs - mx) ** 2).sum() / a.sum())) - sx) < 0.05 * sx
    assert abs(math.sqrt(float((a * (ys - my) ** 2).sum() / a.sum())) - sy) < 0.05 * sy
    # expected depth is the Gaussian's depth wherever it is rendered
    assert torch.allclose(out["depth"][a > 1e-3], torch.full_like(a[a > 1e-3], 2.0))


def test_projection_matches_pinhole():
    uv, sig, z = project_gaussians(torch.tensor([[0.5, -0.25, 2.0]], dtype=torch.float64),
                                   torch.tensor([0.1], dtype=torch.float64), K, EYE, low_pass=0.0)
    assert torch.allclose(uv, torch.tensor([[52.0, 12.75]], dtype=torch.float64))
    assert torch.allclose(sig, torch.tensor([[4.0, 4.5]], dtype=torch.float64)) and float(z) == 2.0


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_two_gaussians_occlude_in_depth_order(order):
    means = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 4.0]], dtype=torch.float64)  # red in front of blue
    scales = torch.tensor([0.1, 0.2], dtype=torch.float64)  # same footprint size in the image
    op = torch.tensor([0.9, 0.9], dtype=torch.float64)
    col = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]], dtype=torch.float64)
    idx = list(order)
    out = render_gaussians(means[idx], scales[idx], op[idx], col[idx], K, EYE, 48, 64)
    c = out["values"][:, 23:25, 31:33].mean((1, 2))  # pixels next to the common centre (32, 24)
    a1 = float(out["alpha"][23, 31])
    # front-to-back: red gets alpha1, blue gets (1 - alpha1) * alpha2 with alpha1 == alpha2 here
    w1 = 0.9 * math.exp(-0.5 * (0.25 / (4 ** 2 + 0.3) + 0.25 / (4.5 ** 2 + 0.3)))
    assert abs(float(c[0]) - w1) < 1e-9 and abs(float(c[2]) - (1 - w1) * w1) < 1e-9
    assert abs(a1 - (1 - (1 - w1) ** 2)) < 1e-9
    # expected depth lies between the two, weighted towards the front one
    assert abs(float(out["depth"][23, 31]) - (2 * w1 + 4 * (1 - w1) * w1) / a1) < 1e-9


def test_chunking_does_not_change_the_render_and_gradients_flow():
    g = torch.Generator().manual_seed(0)
    n = 3000
    means = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([0.6, 0.4, 0.3], dtype=torch.float64)
    means[:, 2] += 3
    scales = torch.rand(n, generator=g, dtype=torch.float64) * 0.03 + 0.01
    op = torch.rand(n, generator=g, dtype=torch.float64) * 0.9
    vals = torch.rand(n, 5, generator=g, dtype=torch.float64, requires_grad=True)
    big = render_gaussians(means, scales, op, vals, K, EYE, 48, 64, {"min_transmittance": 0.0})
    small = render_gaussians(means, scales, op, vals, K, EYE, 48, 64,
                             {"max_pairs_chunk": 5000, "gaussians_chunk": 7, "tile": 8, "min_transmittance": 0.0})
    for k in ("values", "alpha", "depth"):
        assert torch.allclose(big[k], small[k], atol=1e-6), k
    big["values"].sum().backward()
    assert vals.grad is not None and float(vals.grad.abs().sum()) > 0
    # the gradient of the total rendered value w.r.t. a Gaussian's value is its total blending weight
    assert float(vals.grad.max()) <= 48 * 64


def test_gradcheck_small():
    means = torch.tensor([[0.05, 0.0, 2.0], [0.0, 0.03, 2.5]], dtype=torch.float64, requires_grad=True)
    scales = torch.tensor([0.05, 0.06], dtype=torch.float64, requires_grad=True)
    op = torch.tensor([0.7, 0.6], dtype=torch.float64, requires_grad=True)
    vals = torch.rand(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m, s, o, v: render_gaussians(
        m, s, o, v, torch.tensor([[20.0, 0, 4], [0, 20.0, 4], [0, 0, 1]], dtype=torch.float64), EYE, 8, 8,
        {"tile": 8, "radius_sigmas": 50.0})["values"], (means, scales, op, vals))
