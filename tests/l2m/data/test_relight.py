import numpy as np
import torch

from l2m.data.correspondence import symmetric_gt_warp
from l2m.data.engine import PairGenerator
from l2m.data.relight import kelvin_to_rgb, shade
from l2m.data.synthetic import to_training_dict
from l2m.data.lifting import intrinsics_from_focal

from data_scenes import textured_image


def test_relighting_changes_images_not_correspondences():
    img = textured_image(80, 100, seed=3)
    disp = np.tile(np.linspace(0.2, 1.0, 80)[:, None], (1, 100)).astype(np.float32)
    base = {"size": 64, "pseudo_depth": "planes"}
    plain = PairGenerator(base)(img, disp, np.random.default_rng(5))
    lit = PairGenerator(dict(base, relight={"enabled": True, "prob_A": 1.0, "prob_B": 1.0}))(
        img, disp, np.random.default_rng(5))
    for k in ("depth_A", "depth_B", "K_A", "K_B", "T_AtoB", "hole_B"):
        assert np.array_equal(plain[k], lit[k]), k
    diff = np.abs(plain["image_B"].astype(int) - lit["image_B"].astype(int)).mean()
    assert diff > 5 and np.abs(plain["image_A"].astype(int) - lit["image_A"].astype(int)).mean() > 5
    g0, g1 = symmetric_gt_warp(to_training_dict(plain)), symmetric_gt_warp(to_training_dict(lit))
    for k in g0:
        assert torch.equal(g0[k], g1[k]), k
    assert "relight_A" in lit["meta"] and len(lit["meta"]["relight_B"]["lights"]) >= 1


def test_lambertian_shading_follows_the_light():
    H = W = 32
    K = intrinsics_from_focal(0.6, H, W)[None].float()
    depth = torch.full((1, H, W), 2.0)  # wall facing the camera
    albedo = torch.full((1, 3, H, W), 0.5)
    light_left = torch.tensor([[[-1.0, 0.0, 1.0]]])
    out = shade(albedo, depth, K, light_left, torch.ones(1, 1, 3), torch.tensor([0.0]), torch.ones(1, 3),
                exposure=torch.tensor([1.0]), blur_sigma=0)
    assert out[0, 0, :, :8].mean() > 1.3 * out[0, 0, :, -8:].mean()  # nearer to the light = brighter
    assert torch.allclose(out[0, 0], out[0, 1])  # white light keeps grey grey
    warm, cold = kelvin_to_rgb(3000), kelvin_to_rgb(9000)
    assert warm[0] > warm[2] and cold[2] > cold[0]
