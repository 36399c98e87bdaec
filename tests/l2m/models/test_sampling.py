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
