import torch

from l2m.models.gp import cell_centres
from l2m.models.sampling import (kde_density, match_keypoints, sample_matches, to_normalized_coordinates,
                                 to_pixel_coordinates)


def _identity_warp(h=64, w=64):
    g = cell_centres(h, w)
    return torch.cat((g, g), -1)


def test_kde_chunked_equals_full_matrix():
    x = torch.rand(500, 4)
    full = (-torch.cdist(x, x).square() / (2 * 0.1 ** 2)).exp().sum(1)
    assert torch.allclose(kde_density(x, 0.1, max_elems=1000), full, atol=1e-4)


def test_threshold_and_counts():
    warp = _identity_warp()
    cert = torch.zeros(64, 64)
    cert[:, :32] = 0.2  # above threshold -> 1
    m, c = sample_matches(warp, cert, num=300, generator=torch.Generator().manual_seed(0))
    assert len(m) == 300 and torch.all(c == 1) and torch.all(m[:, 0] < 0)
    m, _ = sample_matches(warp, torch.zeros(64, 64), num=10)
    assert len(m) == 0


def test_density_balancing_spreads_matches():
    """A region with every pixel certain (KDE density ~78) vs. one with every 2nd pixel (density ~20):
    plain sampling follows the pixel counts, balanced sampling favours the sparser region ~4:1 per pixel."""
    warp = _identity_warp(100, 100)
    g = warp[..., :2]
    centre = torch.tensor([-0.5, -0.5])
    cluster = (g - centre).norm(dim=-1) < 0.3
    sparse = torch.zeros(100, 100, dtype=torch.bool)
    sparse[::2, ::2] = True
    sparse &= ~cluster
    cert = (cluster | sparse).float()
    frac_pixels = float(cluster.sum() / (cluster.sum() + sparse.sum()))
    gen = torch.Generator().manual_seed(0)
    m_bal, _ = sample_matches(warp, cert, num=1000, generator=gen)
    m_plain, _ = sample_matches(warp, cert, num=1000, balanced=False, generator=gen)
    in_cluster = lambda m: float(((m[:, :2] - centre).norm(dim=-1) < 0.3).float().mean())  # noqa: E731
    assert 0.15 < frac_pixels < 0.3
    assert abs(in_cluster(m_plain) - frac_pixels) < 0.05
    assert in_cluster(m_bal) < 0.6 * in_cluster(m_plain)


def test_kde_reference_subset_is_close_to_exact():
    g = torch.Generator().manual_seed(0)
    w = _identity_warp(100, 100).reshape(-1, 4)
    x = w[torch.randperm(len(w), generator=g)[:4000]]  # matches lie on a 2-D surface, as real warps do
    exact, approx = kde_density(x, 0.1), kde_density(x, 0.1, refs=1000, generator=g)
    assert float(((approx - exact).abs() / exact).median()) < 0.15


def test_sampling_is_seeded():
    warp, cert = _identity_warp(), torch.rand(64, 64)
    a = sample_matches(warp, cert, 100, generator=torch.Generator().manual_seed(5))[0]
    b = sample_matches(warp, cert, 100, generator=torch.Generator().manual_seed(5))[0]
    assert torch.equal(a, b)


def test_large_num_is_memory_bounded():
    """Row-chunked KDE (blocks of at most max_elems) gives the same densities as one big block."""
    warp, cert = _identity_warp(80, 80), torch.ones(80, 80)
    x = warp.reshape(-1, 4)
    small = kde_density(x, 0.1, max_elems=1 << 14)  # 2-row blocks of the 6400 x 6400 problem
    assert torch.allclose(small, kde_density(x, 0.1, max_elems=1 << 30), rtol=1e-4)
    m, _ = sample_matches(warp, cert, num=1200, generator=torch.Generator().manual_seed(0))
    assert len(m) == 1200 and len(torch.unique(m, dim=0)) == 1200


def test_match_keypoints_mutual_nn_through_shift_warp():
    h = w = 32
    g = cell_centres(h, w)
    warp = torch.cat((g, g + torch.tensor([0.1, 0.0])), -1)
    xa = torch.tensor([[0.0, 0.0], [0.5, -0.5], [0.9, 0.9]])
    xb = torch.tensor([[0.6, -0.5], [0.1, 0.0], [-0.9, 0.2]])
    ia, ib = match_keypoints(xa, xb, warp, torch.ones(h, w), max_dist=0.01, chunk=2)
    assert sorted(zip(ia.tolist(), ib.tolist())) == [(0, 1), (1, 0)]
    sym = torch.cat((warp, warp), 1)
    ia2, _ = match_keypoints(xa, xb, sym, torch.ones(h, 2 * w), max_dist=0.01, symmetric=True)
    assert sorted(ia2.tolist()) == [0, 1]


def test_pixel_round_trip():
    p = torch.tensor([[0.0, 0.0], [639.0, 479.0]])
    n = to_normalized_coordinates(p, 480, 640, hloc=True)
    assert torch.allclose(n[0], torch.tensor([-1 + 1 / 640, -1 + 1 / 480]))
    assert torch.allclose(to_pixel_coordinates(n, 480, 640, hloc=True), p, atol=1e-4)


def _similarity_warp(h: int, w: int, scale: float = 0.9, angle: float = 0.1, shift=(0.05, -0.03)):
    """Symmetric (h, 2w, 4) warp of an exact similarity x_B = s R x_A + t (normalised), certainty 1 inside."""
    import math

    c, s = math.cos(angle), math.sin(angle)
    M = torch.tensor([[c, -s], [s, c]]) * scale
    t = torch.tensor(shift)
    fwd = lambda x: x @ M.T + t  # noqa: E731
    bwd = lambda x: (x - t) @ torch.linalg.inv(M).T  # noqa: E731
    g = cell_centres(h, w)
    a2b, b2a = fwd(g), bwd(g)
    warp = torch.cat((torch.cat((g, a2b), -1), torch.cat((b2a, g), -1)), 1)
    cert = torch.cat(((a2b.abs() <= 1).all(-1), (b2a.abs() <= 1).all(-1)), 1).float()
    return warp, cert, fwd


def test_anchor_matches_are_mutual_keypoint_pairs_within_radius():
    from l2m.models.sampling import anchor_matches

    h, w = 120, 160
    warp, cert, fwd = _similarity_warp(h, w)
    px = torch.tensor([w / 2, h / 2])
    gen = torch.Generator().manual_seed(0)
    xa = torch.rand(300, 2, generator=gen) * 1.6 - 0.8
    true_b = fwd(xa)
    seen = (true_b.abs() < 0.98).all(1)
    noise = torch.randn(300, 2, generator=gen) * 0.3 / px  # 0.3 px detector noise
    xb = torch.cat((true_b[seen] + noise[seen], torch.rand(60, 2, generator=gen) * 2 - 1))  # + 60 distractors
    owner = torch.nonzero(seen).squeeze(1)  # B keypoint k < seen.sum() is A's keypoint owner[k]
    ia, ib, score = anchor_matches(xa, xb, warp, cert, radius_px=2.0, cert_th=0.5)
    assert len(ia) == len(ib) == len(score)
    assert len(set(ia.tolist())) == len(ia) and len(set(ib.tolist())) == len(ib)  # one-to-one
    err = ((true_b[ia] - xb[ib]) * px).norm(dim=1)
    assert err.max() <= 2.0  # every match within the radius of the true point (working pixels)
    correct = (ib < int(seen.sum())) & (owner[ib.clamp(max=int(seen.sum()) - 1)] == ia)
    assert correct.float().mean() >= 0.97
    assert len(ia) >= 0.9 * int(seen.sum())
    assert torch.all(score > 0.5)


def test_anchor_matches_need_the_backward_warp_to_agree():
    from l2m.models.sampling import anchor_matches

    h, w = 120, 160
    warp, cert, fwd = _similarity_warp(h, w)
    xa = torch.rand(200, 2, generator=torch.Generator().manual_seed(1)) * 1.2 - 0.6
    xb = fwd(xa)
    assert len(anchor_matches(xa, xb, warp, cert)[0]) >= 190
    broken = warp.clone()
    broken[:, w:, :2] = broken[:, w:, :2] + 0.1  # B -> A points 8 px away from where A -> B came from
    assert len(anchor_matches(xa, xb, broken, cert)[0]) == 0
