import numpy as np
import torch

from l2m.models.gp import cell_centres
from l2m.viz import certainty_image, main, pca_features, warp_image


def test_pca_features_joint_basis():
    torch.manual_seed(0)
    a = torch.randn(16, 4, 5)
    imgs = pca_features([a, a.clone()], size=(8, 10))
    assert imgs[0].shape == (8, 10, 3) and imgs[0].dtype == np.uint8
    assert np.array_equal(imgs[0], imgs[1])  # same features -> same colours in the joint basis


def test_identity_warp_reproduces_image_b():
    rng = np.random.default_rng(0)
    b = rng.integers(0, 255, (24, 32, 3)).astype(np.uint8)
    g = cell_centres(24, 32)
    warp = torch.cat((torch.cat((g, g), -1), torch.cat((g, g), -1)), 1).numpy()
    pic = warp_image(b, b, warp, np.ones((24, 64), np.float32))
    assert pic.shape == (24, 96, 3)
    assert np.abs(pic[:, 32:64].astype(int) - b.astype(int)).max() <= 1
    assert certainty_image(np.zeros((3, 3))).shape == (3, 3, 3)


def test_cli_features_and_match(tmp_path):
    rng = np.random.default_rng(0)
    import cv2

    for n in "ab":
        cv2.imwrite(str(tmp_path / f"{n}.png"), rng.integers(0, 255, (60, 80, 3)).astype(np.uint8))
    main(["features", "--images", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--encoder", "xfeat",
          "--res", "64", "--out", str(tmp_path / "pca.png")])
    assert cv2.imread(str(tmp_path / "pca.png")).shape == (480, 480, 3)
    main(["match", "--images", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--weights", "random",
          "--num", "50", "--out", str(tmp_path / "m.png")])
    assert cv2.imread(str(tmp_path / "m.png")) is not None
