import numpy as np
import torch

from l2m.data.correspondence import (gt_warp, invert_pose, normalized_grid, pack_warp, to_pixels, unpack_warp,
                                     warp_points)
from l2m.data.lifting import disparity_to_depth, intrinsics_from_focal, pixel_grid, render_view, tear_mask
from l2m.data.poses import sample_relative_pose
from l2m.data.pseudo_depth import smooth_disparity

from data_scenes import pose


def test_normalised_grid_pixel_centres():
    g = normalized_grid(4, 8)
    assert torch.allclose(g[0, :, 0], -1 + (2 * torch.arange(8) + 1) / 8)
    assert torch.allclose(g[:, 0, 1], -1 + (2 * torch.arange(4) + 1) / 4)
    assert torch.allclose(to_pixels(g, 4, 8), pixel_grid(4, 8))


def cycle_errors(S: int = 96, seeds=range(4)) -> tuple[torch.Tensor, torch.Tensor]:
    """Cycle errors (px) B->A->B and A->B->A on covisible pixels of random smooth scenes."""
    bab, aba = [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        depth, d01 = disparity_to_depth(torch.from_numpy(smooth_disparity(S, S, rng)))
        K = intrinsics_from_focal(rng.uniform(0.45, 0.75), S, S)
        T = torch.from_numpy(sample_relative_pose(rng)[0])
        out = render_view(depth, K, K, T, (S, S), vertex_visible=tear_mask(d01))
        depth_B = torch.where(out["visible"] > 0.5, out["depth"], torch.zeros_like(out["depth"]))
        grid = pixel_grid(S, S).reshape(-1, 2)
        for d0, d1, T01, acc in ((depth_B, depth, invert_pose(T), bab), (depth, depth_B, T, aba)):
            xy1, v01 = warp_points(grid, d0, d1, K, K, T01)
            xy0, v10 = warp_points(xy1, d1, d0, K, K, invert_pose(T01))
            cov = v01 & v10
            assert cov.float().mean() > 0.2
            acc.append((xy0 - grid).norm(dim=-1)[cov])
    return torch.cat(bab), torch.cat(aba)


def test_forward_backward_cycle_on_random_smooth_scenes():
    bab, aba = cycle_errors()
    print(f"cycle B->A->B px: median {bab.median():.1e} max {bab.max():.1e}; "
          f"A->B->A px: median {aba.median():.1e} p99 {aba.quantile(0.99):.1e} max {aba.max():.1e}")
    # Starting on B's pixel centres, both depth look-ups are exact on the mesh (A's is off-grid but
    # mesh-consistent), so the cycle closes to float precision.
    assert bab.max() < 0.1
    # Starting on A's grid, B's depth must be interpolated between B's pixel centres, where the projected
    # mesh is not piecewise linear: the median stays tiny, the tail is bounded by the 5 % depth test.
    assert aba.median() < 0.02 and aba.quantile(0.99) < 0.5


def test_box_in_front_of_plane_marks_occluded_pixels():
    S = 96
    K = intrinsics_from_focal(0.6, S, S)
    depth = torch.full((S, S), 4.0)
    depth[32:64, 32:64] = 2.0  # fronto-parallel box face at z = 2 in front of a wall at z = 4
    disp = 1 / depth
    vis = tear_mask((disp - disp.min()) / (disp.max() - disp.min()))
    T = pose([0.0, 0.0, 1e-9], [0.4, 0.0, 0.0])  # scene shifts right: f*t/z = 7.2 px (wall), 14.4 px (box)
    out = render_view(depth, K, K, T, (S, S), vertex_visible=vis)
    depth_B = torch.where(out["visible"] > 0.5, out["depth"], torch.zeros_like(out["depth"]))
    warp, valid = gt_warp(depth, depth_B, K, K, T)
    xy = pixel_grid(S, S, dtype=torch.float64)
    f = float(K[0, 0])
    # analytic: a wall pixel lands at x + f*0.4/4; it is hidden if that lies under the box's image in B,
    # which spans x in [32 + f*0.4/2, 64 + f*0.4/2] and y in [32, 64]
    xb_wall = xy[..., 0] + f * 0.4 / 4
    wall = depth == 4.0
    box_b = (xb_wall >= 32 + f * 0.2) & (xb_wall <= 64 + f * 0.2) & (xy[..., 1] >= 32) & (xy[..., 1] <= 64)
    occluded = wall & box_b
    margin = torch.nn.functional.max_pool2d(occluded[None, None].float(), 5, 1, 2)[0, 0] > 0
    inner = occluded & ~(torch.nn.functional.max_pool2d((~occluded)[None, None].float(), 5, 1, 2)[0, 0] > 0)
    assert occluded.sum() > 150
    assert not valid[inner].any()  # every clearly occluded wall pixel is rejected
    # clearly visible pixels (away from the box outline by 3 px and inside B) stay valid
    edge = torch.zeros(S, S, dtype=torch.bool)
    edge[29:68, 29:68] = True
    edge[35:61, 35:61] = False
    visible = ~margin & ~edge & (xb_wall < S - 1)
    visible &= (xy[..., 0] + f * 0.4 / depth.double()) < S - 1
    assert valid[visible].float().mean() > 0.99
    # and the valid ones land where the analytic shift puts them
    shift = to_pixels(warp.double(), S, S)[..., 0] - xy[..., 0]
    assert (shift - f * 0.4 / depth.double())[valid].abs().max() < 0.05


def test_pack_unpack_warp_roundtrip():
    S = 64
    warp = torch.rand(S, S, 2) * 2 - 1
    valid = torch.rand(S, S) > 0.3
    warp[~valid] = 0
    w2, v2 = unpack_warp(pack_warp(warp, valid, 128, 96))
    assert torch.equal(v2, valid)
    err = to_pixels(w2.double(), 128, 96) - to_pixels(warp.double(), 128, 96)
    assert err.abs().max() <= 1 / 32 + 1e-6


def test_gt_warp_is_resolution_independent_on_a_plane():
    S = 96
    K = intrinsics_from_focal(0.55, S, S)
    depth = torch.full((S, S), 3.0)
    T = pose([0.05, 0.08, -0.02], [0.2, 0.1, -0.3])
    out = render_view(depth, K, K, T, (S, S))
    w_full, v_full = gt_warp(depth, out["depth"], K, K, T)
    w_half, v_half = gt_warp(depth, out["depth"], K, K, T, out_hw=(48, 48))
    # the 48x48 grid's pixel centres are averages of 2x2 full-res centres; on a plane the warp is a homography,
    # so compare with the full-res warp resampled at those points
    ref = torch.nn.functional.avg_pool2d(w_full.permute(2, 0, 1)[None], 2)[0].permute(1, 2, 0)
    ok = v_half & (torch.nn.functional.avg_pool2d(v_full[None, None].float(), 2)[0, 0] == 1)
    assert ok.float().mean() > 0.5
    assert (to_pixels(w_half - ref, 2, 2) - 1).abs()[ok].max() * S / 2 < 0.05  # curvature of H: tiny
