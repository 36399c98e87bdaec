import numpy as np
import pytest
import torch

from l2m.models.matcher import L2M, pair_resolution, resize_image
from l2m_test_models import build_micro


@pytest.mark.parametrize("coarse,up", [(56, None), (56, 84), (70, 112), ((56, 84), None)])
def test_output_shapes(micro_model, pair, coarse, up):
    micro_model.conf.update(coarse_res=coarse, upsample_res=up)
    out = micro_model.match(*pair)
    hc, wc = (coarse, coarse) if isinstance(coarse, int) else coarse
    h, w = (up, up) if up else (hc, wc)
    assert out.warp.shape == (h, 2 * w, 4) and out.certainty.shape == (h, 2 * w)
    assert out.warp_coarse.shape == (hc, 2 * wc, 4) and out.certainty_coarse.shape == (hc, 2 * wc)
    assert out.warp.abs().max() <= 1 and 0 <= out.certainty.min() and out.certainty.max() <= 1
    # grids: left half carries A's cell centres, right half B's
    assert torch.allclose(out.warp[0, 0, :2], torch.tensor([-1 + 1 / w, -1 + 1 / h]))
    assert torch.allclose(out.warp[-1, -1, 2:], torch.tensor([1 - 1 / w, 1 - 1 / h]))
    micro_model.conf.update(coarse_res=56, upsample_res=84)


def test_non_multiple_resolution_is_rejected(micro_model, pair):
    micro_model.conf.update(coarse_res=100)
    try:
        with pytest.raises(ValueError, match="multiple of 14"):
            micro_model.match(*pair)
    finally:
        micro_model.conf.update(coarse_res=56)


def test_deterministic_with_seed(pair):
    a = build_micro(seed=3).match(*pair)
    b = build_micro(seed=3).match(*pair)
    assert torch.equal(a.warp, b.warp) and torch.equal(a.certainty, b.certainty)


def test_symmetric_output_is_consistent_under_swap(micro_model, pair):
    ab = micro_model.match(pair[0], pair[1])
    ba = micro_model.match(pair[1], pair[0])
    w = ab.warp.shape[1] // 2
    # A->B half of (A, B) equals the right half of (B, A) with the coordinate pairs swapped
    assert torch.allclose(ab.warp[:, :w], ba.warp[:, w:][..., [2, 3, 0, 1]], atol=1e-5)
    assert torch.allclose(ab.certainty[:, :w], ba.certainty[:, w:], atol=1e-5)
    assert torch.allclose(ab.warp[:, w:], ba.warp[:, :w][..., [2, 3, 0, 1]], atol=1e-5)


@pytest.mark.parametrize("cache_size", [8, 3])  # counted in images: 3 hold both passes of 3 images
def test_feature_cache_gives_identical_outputs_and_is_used(pair, cache_size):
    cached = build_micro({"cache_size": cache_size})
    plain = build_micro()
    rng = np.random.default_rng(1)
    c = rng.integers(0, 255, pair[0].shape).astype(np.uint8)
    images = {"a": pair[0], "b": pair[1], "c": c}
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    for n0, n1 in pairs:
        o1 = cached.match(images[n0], images[n1], n0, n1)
        o2 = plain.match(images[n0], images[n1])
        assert torch.equal(o1.warp, o2.warp) and torch.equal(o1.certainty, o2.certainty)
    # 3 images x 2 passes encoded once each: 6 misses, the other 6 look-ups are hits
    assert cached.cache.misses == 6 and cached.cache.hits == 6
    assert len(cached.cache.data) == 3 and len(plain.cache.data) == 0


def test_batch_of_pairs_equals_single_pairs(micro_model, pair):
    micro_model.conf.update(pair_batch=2)
    outs = micro_model.match_batch([pair, pair[::-1], pair])
    single = micro_model.match(*pair)
    assert len(outs) == 3
    assert torch.allclose(outs[0].warp, single.warp, atol=1e-5)
    assert torch.allclose(outs[2].certainty, single.certainty, atol=1e-5)


def test_pair_resolution_keeps_the_aspect_ratio_at_the_same_area():
    # Strecha photos at long side 1024 (683 x 1024), l2m-tiny's 800 px pass, XFeat multiple 32
    assert pair_resolution(800, (683, 1024), (683, 1024), 32, keep_aspect=True) == (640, 992)
    assert pair_resolution(448, (683, 1024), (683, 1024), 32, keep_aspect=True) == (352, 544)
    assert pair_resolution(448, (1024, 683), (1024, 683), 32, keep_aspect=True) == (544, 352)  # portrait
    # a landscape and a portrait photo: geometric mean aspect 1, i.e. the square
    assert pair_resolution(448, (683, 1024), (1024, 683), 32, keep_aspect=True) == (448, 448)
    # off, or an explicit [H, W]: as given
    assert pair_resolution(800, (683, 1024), (683, 1024), 32, keep_aspect=False) == (800, 800)
    assert pair_resolution([480, 640], (683, 1024), (683, 1024), 32, keep_aspect=True) == (480, 640)
    # a panorama never collapses below one multiple
    assert pair_resolution(64, (100, 4000), (100, 4000), 32, keep_aspect=True) == (32, 416)


def test_keep_aspect_matches_pairs_of_mixed_shapes_in_one_batch(micro_model, pair):
    pair = tuple(np.ascontiguousarray(im[:, :120]) for im in pair)  # square 120 x 120 photos
    wide = np.ascontiguousarray(np.concatenate([pair[0], pair[0][:, ::-1]], axis=1))  # 120 x 240
    micro_model.conf.update(keep_aspect=True, pair_batch=4)
    try:
        outs = micro_model.match_batch([pair, (wide, wide), pair])
        single = micro_model.match(*pair)
    finally:
        micro_model.conf.update(keep_aspect=False)
    # square photos keep the square 56 / 84; aspect 2 at multiples of 14: 42 x 84 and 56 x 112
    assert outs[0].warp.shape == outs[2].warp.shape == single.warp.shape == (84, 168, 4)
    assert outs[1].warp.shape == (56, 2 * 112, 4) and outs[1].warp_coarse.shape == (42, 2 * 84, 4)
    assert torch.allclose(outs[2].warp, single.warp, atol=1e-5)


def test_training_forward_returns_levels(micro_model):
    micro_model.train()
    try:
        batch = {"im_A": torch.rand(2, 3, 56, 56), "im_B": torch.rand(2, 3, 56, 56)}
        out = micro_model(batch)
        assert list(out) == [16, 8, 4, 2, 1]
        assert out[16]["gm_cls"].shape == (2, 256, 4, 4) and out[1]["flow"].shape == (2, 2, 56, 56)
        sym = micro_model(batch, symmetric=True)
        assert sym[1]["flow"].shape[0] == 4
        # the external ViT is frozen and outside the module tree
        assert not any(p is q for p in micro_model.parameters() for q in micro_model.coarse_encoder.parameters())
        assert not micro_model.coarse_encoder.training
    finally:
        micro_model.eval()


def test_inputs_paths_tensors_and_arrays_agree(micro_model, pair, tmp_path):
    from PIL import Image

    Image.fromarray(pair[0]).save(tmp_path / "a.png")
    x = resize_image(tmp_path / "a.png", (56, 70))
    y = resize_image(pair[0], (56, 70))
    assert x.shape == (1, 3, 56, 70) and torch.equal(x, y)
    t = resize_image(torch.from_numpy(pair[0]).permute(2, 0, 1), (56, 70))
    assert (t - y).abs().mean() < 0.02


def test_pixel_conversion_convention():
    m = torch.tensor([[-1 + 1 / 640, -1 + 1 / 480, 1 - 1 / 320, 0.0]])
    pa, pb = L2M.to_pixel_coordinates(m, 480, 640, 240, 320)
    assert torch.allclose(pa, torch.tensor([[0.5, 0.5]]), atol=1e-4) and torch.allclose(pb, torch.tensor([[319.5, 120.0]]), atol=1e-4)
    pa, _ = L2M.to_pixel_coordinates(m, 480, 640, 240, 320, hloc=True)
    assert torch.allclose(pa, torch.tensor([[0.0, 0.0]]), atol=1e-4)


def test_cycle_error_is_zero_for_inverse_warps_and_flags_a_broken_region():
    from l2m.models.gp import cell_centres
    from l2m.models.matcher import cycle_error_px

    h, w = 24, 32
    grid = cell_centres(h, w)[None]
    shift = torch.tensor([4 * 2 / w, 0.0])  # A->B moves 4 px right, B->A moves back
    fwd, bwd = grid + shift, grid - shift
    err = cycle_error_px(fwd, bwd)
    inner = err[:, :, : w - 4]  # pixels whose target lies inside B
    assert float(inner.max()) < 1e-3
    bwd_broken = bwd.clone()
    bwd_broken[:, 8:16, 12:20] += torch.tensor([10 * 2 / w, 0.0])  # 10 px wrong in a block of B
    err = cycle_error_px(fwd, bwd_broken)
    hit = err[0, 10:14, 10:14]  # A pixels landing well inside the broken block (x + 4 in 14..18)
    assert float(hit.min()) > 9.0 and float(err[0, :4, : w - 4].max()) < 1e-3


def test_cycle_check_zeroes_only_inconsistent_certainty(micro_model, pair):
    micro_model.conf["cycle_px"] = None
    plain = micro_model.match(*pair)
    micro_model.conf["cycle_px"] = 1e9
    loose = micro_model.match(*pair)
    micro_model.conf["cycle_px"] = 0.5
    strict = micro_model.match(*pair)
    micro_model.conf["cycle_px"] = None
    assert torch.equal(plain.certainty, loose.certainty)
    assert torch.equal(plain.warp, strict.warp)
    kept = strict.certainty > 0
    assert torch.equal(strict.certainty[kept], plain.certainty[kept])
    assert int(kept.sum()) < int((plain.certainty > 0).sum())


def test_upsample_levels_override_runs_only_those_refiners(micro_model, pair):
    calls = []
    hooks = [micro_model.decoder.conv_refiner[str(lv)].register_forward_hook(
        lambda m, i, o, lv=lv: calls.append((lv, tuple(i[0].shape[-2:])))) for lv in (16, 8, 4, 2, 1)]
    try:
        micro_model.conf.update(coarse_res=(56, 84), upsample_res=(84, 112), upsample_levels=(4, 2, 1))
        out = micro_model.match(*pair)
    finally:
        micro_model.conf.update(coarse_res=56, upsample_res=84, upsample_levels=None)
        for h in hooks:
            h.remove()
    assert out.warp.shape == (84, 224, 4)
    # pass 1 at 56x84 runs every level, pass 2 at 84x112 only the requested ones (batch: A->B and B->A)
    assert calls == [(16, (4, 6)), (8, (7, 10)), (4, (14, 21)), (2, (28, 42)), (1, (56, 84)),
                     (4, (21, 28)), (2, (42, 56)), (1, (84, 112))], calls


def test_pass_one_can_stop_above_stride_one(micro_model, pair):
    micro_model.conf.update(coarse_levels=(16, 8, 4), upsample_levels=(4, 2, 1))
    try:
        short = micro_model.match(*pair)
    finally:
        micro_model.conf.update(coarse_levels=None, upsample_levels=None)
    full = micro_model.match(*pair)
    assert short.warp_coarse.shape == full.warp_coarse.shape == (56, 112, 4)
    assert short.warp.shape == full.warp.shape == (84, 168, 4)
    # same grids, different (but bounded) predictions: only the refinement path changed
    assert torch.equal(short.warp[..., :2][:, :84], full.warp[..., :2][:, :84])
    assert not torch.equal(short.warp, full.warp)
    with pytest.raises(ValueError, match="coarse level"):
        micro_model.decoder({8: torch.zeros(1, 1, 1, 1)}, {8: torch.zeros(1, 1, 1, 1)}, levels=(8, 4))


def test_upsample_res_needs_only_the_fine_cnn_multiple(pair):
    model = build_micro()
    object.__setattr__(model, "upsample_multiple", 8)
    model.conf.update(upsample_res=88)  # 8 | 88 but 14 ∤ 88: fine for pass 2, which never runs the ViT
    assert model.match(*pair).warp.shape == (88, 176, 4)
    model.conf.update(coarse_res=88)
    with pytest.raises(ValueError, match="coarse_res .* multiple of 14"):
        model.match(*pair)


def test_two_pass_match_is_pinned(pair):
    """Pass 1 at 56² (ViT-S + micro decoder, seed 0), pass 2 at 84² from the level-1 flow with s = 84/56,
    attenuated by the pass-1 level-16 certainty, symmetric. Values recorded from this implementation after it
    was checked against the official code (tests/l2m/models/test_official_parity.py); any change to the
    two-pass path, the attenuation or the position-embedding rule moves them."""
    out = build_micro(seed=0).match(*pair)
    assert out.warp.shape == (84, 168, 4) and out.warp_coarse.shape == (56, 112, 4)
    expect_a = [-0.27381, -0.03571, -0.12511, 0.35109]  # A's cell (30, 40) and its A->B prediction
    expect_b = [0.30575, 0.13844, -0.27381, -0.03571]  # B's cell (30, 40) and its B->A prediction
    assert np.allclose(out.warp[40, 30].tolist(), expect_a, atol=2e-4)
    assert np.allclose(out.warp[40, 84 + 30].tolist(), expect_b, atol=2e-4)
    assert abs(float(out.certainty[40, 30]) - 0.61442) < 2e-4
    assert abs(float(out.certainty.mean()) - 0.64383) < 2e-4
    assert abs(float(out.certainty_coarse.mean()) - 0.62176) < 2e-4
    assert abs(float(out.warp[:, :84, 2:].std()) - 0.32435) < 2e-4


def test_precision_policy_is_fp16_vit_on_cuda_and_fp32_on_cpu(micro_model, pair):
    """The official policy (spec §2.3): the ViT in fp16 on CUDA; the CPU keeps it, and everything, in fp32."""
    from l2m.models.encoders import vit_dtype

    assert vit_dtype(torch.device("cuda", 0)) == torch.float16
    assert vit_dtype(torch.device("cpu")) == torch.float32
    vit = micro_model.coarse_encoder
    vit.half()  # a model moved back from a GPU: the CPU forward restores fp32 before running the ViT
    out = micro_model.match(*pair)
    assert next(vit.parameters()).dtype == torch.float32 and out.warp.dtype == torch.float32
    assert not micro_model._autocast()._enabled  # no fp16 autocast on the CPU
