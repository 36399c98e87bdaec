import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from l2m.models.decoder import Decoder, DecoderConfig
from l2m.models.gp import GP, cell_centres, cosine_kernel
from l2m.models.refiner import local_correlation
from l2m.models.transformer import anchor_coordinates, cls_to_flow

from l2m_test_models import micro_decoder_config

SPEC = Path(__file__).resolve().parents[3] / ".." / "shared" / "spec" / "l2m_matcher_state_dict_keys.tsv"


def test_full_decoder_matches_spec_sizes():
    dec = Decoder(DecoderConfig())
    n = sum(p.numel() for p in dec.parameters())
    assert abs(n - (111.29e6 - 10.59e6)) < 0.02e6
    assert dec.conv_refiner["16"].channels == 1377 and dec.conv_refiner["1"].channels == 24
    assert dec.embedding_decoder.to_out.out_features == 4097


def test_cell_centres_and_anchor_order():
    g = cell_centres(2, 4)
    assert torch.allclose(g[0, 0], torch.tensor([-0.75, -0.5])) and torch.allclose(g[1, 3], torch.tensor([0.75, 0.5]))
    a = anchor_coordinates(64)
    k = 5 * 64 + 7  # iy = 5, ix = 7
    assert torch.allclose(a[k], torch.tensor([-1 + 15 / 64, -1 + 11 / 64]))


def test_cls_to_flow_refine_decoding():
    g = 8
    logits = torch.full((1, g * g, 1, 2), -30.0)
    logits[0, 3 * g + 4, 0, 0] = 10.0  # a single sharp anchor
    logits[0, 3 * g + 4, 0, 1] = 5.0   # and a tie between two horizontal neighbours
    logits[0, 3 * g + 5, 0, 1] = 5.0
    flow = cls_to_flow(logits)
    a = anchor_coordinates(g)
    assert torch.allclose(flow[0, :, 0, 0], a[3 * g + 4], atol=1e-5)
    assert torch.allclose(flow[0, :, 0, 1], (a[3 * g + 4] + a[3 * g + 5]) / 2, atol=1e-5)


@pytest.mark.parametrize("solve", ["inverse", "cholesky"])
def test_gp_posterior_mean_equals_explicit_inverse(solve):
    torch.manual_seed(0)
    gp = GP(gp_dim=16, solve=solve)
    x, y = torch.randn(2, 8, 3, 4), torch.randn(2, 8, 4, 5)
    mu = gp(x, y)
    xt, yt = x.flatten(2).transpose(1, 2), y.flatten(2).transpose(1, 2)
    f = gp.basis(2, 4, 5, x.device)
    ref = cosine_kernel(xt, yt, 0.2) @ torch.linalg.inv(cosine_kernel(yt, yt, 0.2) + 0.1 * torch.eye(20)) @ f
    assert mu.shape == (2, 16, 3, 4)
    assert torch.allclose(mu.flatten(2).transpose(1, 2), ref, atol=1e-4)
    assert math.isclose(float(cosine_kernel(xt[:, :1], xt[:, :1], 0.2)[0, 0, 0]), 1.0, abs_tol=1e-5)


def test_local_correlation_matches_naive_window():
    torch.manual_seed(0)
    fa, fb = torch.randn(1, 5, 6, 7), torch.randn(1, 5, 6, 7)
    flow = torch.rand(1, 2, 6, 7) * 2.2 - 1.1
    r = 2
    out = local_correlation(fa, fb, flow, r, budget=5 * 6 * 7 * 3)  # forces several offset groups
    i, j, ky, kx = 2, 3, 1, -2
    q = flow[0, :, i, j] + torch.tensor([kx * 2 / 7, ky * 2 / 6])
    s = F.grid_sample(fb, q.view(1, 1, 1, 2), align_corners=False)[0, :, 0, 0]
    assert torch.allclose(out[0, (ky + r) * 5 + (kx + r), i, j], (fa[0, :, i, j] * s).sum() / 5 ** 0.5, atol=1e-5)


def test_training_forward_records_per_level_outputs():
    torch.manual_seed(0)
    dec = Decoder(micro_decoder_config()).train()
    sizes = {16: 4, 8: 8, 4: 16, 2: 32, 1: 64}
    cfg = dec.config
    pa = {lv: torch.randn(2, cfg.proj_dims[lv], s, s) for lv, s in sizes.items()}
    pb = {lv: torch.randn(2, cfg.proj_dims[lv], s, s) for lv, s in sizes.items()}
    out = dec(pa, pb)
    assert list(out) == [16, 8, 4, 2, 1]
    assert out[16]["gm_cls"].shape == (2, 256, 4, 4) and out[16]["gm_certainty"].shape == (2, 1, 4, 4)
    for lv, s in sizes.items():
        assert out[lv]["flow"].shape == (2, 2, s, s) and out[lv]["certainty"].shape == (2, 1, s, s)
        assert "flow_pre_delta" in out[lv]
    assert "gm_cls" not in out[8]
    # update rule: flow = flow_pre_delta + L * delta / (4 * W1)
    d = out[4]["delta_flow"]
    assert torch.allclose(out[4]["flow"][:, 0], out[4]["flow_pre_delta"][:, 0] + 4 * d[:, 0] / (4 * 64), atol=1e-6)
    loss = sum(o["flow"].square().mean() for o in out.values()) + out[16]["gm_cls"].mean()
    loss.backward()
    assert dec.embedding_decoder.to_out.weight.grad is not None and dec.conv_refiner["1"].out_conv.weight.grad is not None
    # the flow passed between levels is detached: level-1 loss does not reach the transformer
    dec.zero_grad()
    out = dec(pa, pb)
    out[1]["flow"].sum().backward()
    assert dec.embedding_decoder.to_out.weight.grad is None or dec.embedding_decoder.to_out.weight.grad.abs().sum() == 0


def test_upsample_pass_runs_fine_levels_only():
    torch.manual_seed(0)
    dec = Decoder(micro_decoder_config()).eval()
    cfg = dec.config
    pa = {lv: torch.randn(2, cfg.proj_dims[lv], 48 // lv, 48 // lv) for lv in (8, 4, 2, 1)}
    with torch.no_grad():
        out = dec(pa, pa, flow=torch.zeros(2, 2, 32, 32), certainty=torch.zeros(2, 1, 32, 32), upsample=True,
                  scale_factor=1.5)
    assert list(out) == [8, 4, 2, 1] and out[1]["flow"].shape == (2, 2, 48, 48)
    with pytest.raises(ValueError, match="previous pass"):
        dec(pa, pa, upsample=True)


def test_gp_inverse_runs_on_a_batch_with_two_threads():
    """oneMKL's batched inverse raises on a batch of 400×400 (or larger) matrices with 2 CPU threads (torch 2.14);
    the GP inverts one matrix at a time and gives the Cholesky solve's result."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        x, y = torch.randn(2, 16, 20, 20), torch.randn(2, 16, 20, 20)
        mu = GP(gp_dim=8, solve="inverse")(x, y)
    finally:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    gp = GP(gp_dim=8, solve="inverse")
    ref = GP(gp_dim=8, solve="cholesky")
    ref.load_state_dict(gp.state_dict())
    assert torch.allclose(gp(x, y), ref(x, y), atol=1e-4) and not mu.isnan().any()
