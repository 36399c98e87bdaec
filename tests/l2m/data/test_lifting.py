import torch

from l2m.data.correspondence import gt_warp, invert_pose, to_pixels
from l2m.data.lifting import (disparity_to_depth, intrinsics_from_focal, pixel_grid, render_view, tear_mask,
                              unproject, transform, project)

from data_scenes import pose


def plane_depth(K, S, n, d):
    xy = pixel_grid(S, S, dtype=torch.float64)
    r = torch.stack([(xy[..., 0] - K[0, 2]) / K[0, 0], (xy[..., 1] - K[1, 2]) / K[1, 1],
                     torch.ones(S, S, dtype=torch.float64)], -1)
    return d / (r @ n), xy


def homography(K, T, n, d):
    return K @ (T[:3, :3] + T[:3, 3:] @ n[None] / d) @ torch.linalg.inv(K)


def apply_h(H, xy):
    p = torch.cat([xy, torch.ones_like(xy[..., :1])], -1) @ H.T
    return p[..., :2] / p[..., 2:]


def test_planar_scene_matches_homography_both_ways():
    S = 96
    K = intrinsics_from_focal(0.6, S, S)
    n = torch.tensor([0.2, -0.3, 1.0], dtype=torch.float64)
    n = n / n.norm()
    depth, xy = plane_depth(K, S, n, 2.0)
    T = pose([0.1, -0.12, 0.09], [0.3, -0.2, 0.5])
    out = render_view(depth.float(), K, K, T, (S, S))
    H = homography(K, T, n, 2.0)
    w, v = gt_warp(depth.float(), out["depth"], K, K, T)
    err_ab = (to_pixels(w.double(), S, S) - apply_h(H, xy)).norm(dim=-1)[v]
    w2, v2 = gt_warp(out["depth"], depth.float(), K, K, invert_pose(T))
    err_ba = (to_pixels(w2.double(), S, S) - apply_h(torch.linalg.inv(H), xy)).norm(dim=-1)[v2]
    assert v.float().mean() > 0.5 and v2.float().mean() > 0.5
    assert err_ab.max() < 0.05 and err_ba.max() < 0.05, (err_ab.max(), err_ba.max())
    # the rendered depth itself is the plane's depth in view B
    src = apply_h(torch.linalg.inv(H), xy)
    rays = torch.stack([(src[..., 0] - K[0, 2]) / K[0, 0], (src[..., 1] - K[1, 2]) / K[1, 1],
                        torch.ones(S, S, dtype=torch.float64)], -1)
    z_true = transform(rays * (2.0 / (rays @ n))[..., None], T)[..., 2]
    rel = ((out["depth"].double() - z_true).abs() / z_true)[out["covered"]]
    assert rel.max() < 1e-5


def test_project_unproject_roundtrip():
    K = intrinsics_from_focal(0.5, 64, 80)
    depth = torch.rand(64, 80, dtype=torch.float64) + 1
    xy, z = project(unproject(depth, K), K)
    assert torch.allclose(xy, pixel_grid(64, 80, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(z, depth)


def test_disparity_normalisation_and_tear_rule():
    disp = torch.zeros(32, 32)
    disp[:, 16:] = 5.0  # a step: foreground on the right
    depth, d01 = disparity_to_depth(disp)
    assert abs(float(depth.min()) - 1 / 1.0011) < 1e-4 and abs(float(depth.max()) - 1 / 0.0011) < 1e-2
    vis = tear_mask(d01, normalized_sobel=True)
    assert not vis[:, 15:17].any() and vis[:, :14].all() and vis[:, 18:].all()
    ramp = torch.linspace(0, 1, 32)[None].repeat(32, 1) * 0.2  # slope 0.2/31 per pixel: never torn
    assert tear_mask(ramp, normalized_sobel=False).all()
    small_step = torch.zeros(32, 32)
    small_step[:, 16:] = 0.1  # 0.1 step: torn only with the unnormalised kernel (4*0.1 > 0.23)
    assert tear_mask(small_step, normalized_sobel=True).all()
    assert not tear_mask(small_step, normalized_sobel=False)[:, 15:17].any()


def test_torn_edge_leaves_a_hole_not_a_rubber_sheet():
    S = 64
    K = intrinsics_from_focal(0.6, S, S)
    disp = torch.full((S, S), 0.2)
    disp[:, 32:] = 1.0
    depth, d01 = disparity_to_depth(disp)
    T = pose([0.0, 0.0, 1e-9], [0.3, 0.0, 0.0])  # camera moves left: the near half slides right, a gap opens
    out = render_view(depth, K, K, T, (S, S), vertex_visible=tear_mask(d01))
    empty_cols = (~out["covered"]).float().mean(0)
    assert empty_cols.max() == 1.0  # at least one fully empty column where the disocclusion is
    stretched = render_view(depth, K, K, T, (S, S))
    assert stretched["covered"][:, 4:].all()  # without the tear rule the mesh stretches over the gap
