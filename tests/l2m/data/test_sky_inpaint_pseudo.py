import numpy as np
import pytest
import torch

from l2m.data.inpaint import get_inpainter, register_inpainter
from l2m.data.pseudo_depth import KINDS, pseudo_disparity
from l2m.data.sky import HeuristicSkySegmenter, OnnxSkySegmenter, get_sky_segmenter
from l2m.data.synthetic import SyntheticPairs

from data_scenes import textured_image


def rough(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def sky_photo(h=96, w=128):
    img = rough(h, w, 4)
    sky_rows = h // 3
    grad = np.linspace(200, 235, sky_rows)[:, None]
    img[:sky_rows] = np.stack([grad * 0.55, grad * 0.75, grad], -1).astype(np.uint8)[:, None].repeat(w, 1)[:, :, 0]
    return img, sky_rows


def test_heuristic_sky_finds_a_smooth_blue_top_and_nothing_in_a_textured_photo():
    img, rows = sky_photo()
    sky = HeuristicSkySegmenter()(img)
    assert sky[: rows - 2].mean() > 0.95 and sky[rows + 3:].mean() < 0.02
    assert not HeuristicSkySegmenter()(rough(96, 128, 7)).any()
    with pytest.raises(FileNotFoundError, match="Sky model"):
        get_sky_segmenter("/nonexistent/sky.onnx")
    assert isinstance(get_sky_segmenter(None), HeuristicSkySegmenter)


class _BlueMinusRed(torch.nn.Module):
    """A tiny 'sky model': local mean of (blue - red) of the normalised input; sign=-1 gives the opposite map."""

    def __init__(self, sign: float):
        super().__init__()
        self.sign = sign
        self.pool = torch.nn.AvgPool2d(31, stride=1, padding=15, count_include_pad=False)

    def forward(self, x):
        return self.pool(self.sign * (x[:, 2:3] - x[:, 0:1]))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_onnx_sky_segmenter_runs_a_real_onnx_model(tmp_path, sign):
    """The ONNX path end to end on a model exported here: its output decides the mask (the inverted model gives
    the inverted mask), through the segmenter's resize, normalisation and min-max steps."""
    pytest.importorskip("onnxruntime", reason="pip install onnxruntime (the [onnx] extra) for the ONNX sky path")
    pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package")
    path = tmp_path / "sky.onnx"
    torch.onnx.export(_BlueMinusRed(sign), torch.zeros(1, 3, 320, 320), str(path), input_names=["image"],
                      output_names=["sky"], dynamo=False)
    segmenter = get_sky_segmenter(str(path))
    assert isinstance(segmenter, OnnxSkySegmenter)
    img, rows = sky_photo()
    sky = segmenter(img)
    assert sky.shape == img.shape[:2] and sky.dtype == bool
    top, bottom = sky[: rows - 6].mean(), sky[rows + 6:].mean()
    if sign > 0:
        assert top > 0.95 and bottom < 0.02, (top, bottom)
    else:
        assert top < 0.02 and bottom > 0.5, (top, bottom)


def test_sky_pixels_never_get_depth_or_correspondences():
    img, rows = sky_photo(80, 80)
    import cv2, tempfile, pathlib
    with tempfile.TemporaryDirectory() as d:
        cv2.imwrite(str(pathlib.Path(d) / "s.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        ds = SyntheticPairs(pathlib.Path(d), conf={"size": 64, "sky": {"enabled": True}}, gt_resolution=(32, 32))
        s = ds[0]
    assert s["sky_A"].float().mean() > 0.2
    assert not s["valid_A"][s["sky_A"]].any() and not s["valid_B"][s["sky_B"]].any()
    sky_small = torch.nn.functional.interpolate(s["sky_A"][None, None].float(), (32, 32))[0, 0] > 0.5
    assert not s["valid_AtoB"][sky_small].any()


def test_inpainters_fill_holes_and_are_pluggable():
    img = textured_image(64, 64, 1)
    holes = np.zeros((64, 64), bool)
    holes[20:30, 20:30] = True
    bad = img.copy()
    bad[holes] = 0
    filled = get_inpainter("telea")(bad, holes)
    assert np.array_equal(filled[~holes], img[~holes]) and filled[holes].mean() > 20
    register_inpainter("grey", lambda **kw: (lambda im, h: np.where(h[..., None], 128, im).astype(np.uint8)))
    assert (get_inpainter("grey")(bad, holes)[holes] == 128).all()
    with pytest.raises(ValueError, match="Unknown inpainter"):
        get_inpainter("stable-diffusion")


@pytest.mark.parametrize("kind", KINDS)
def test_pseudo_depth_kinds(kind):
    img = textured_image(64, 80, 2)
    sky = np.zeros((64, 80), bool)
    sky[:5] = True
    d = pseudo_disparity(img, np.random.default_rng(0), kind, sky)
    assert d.shape == (64, 80) and d.dtype == np.float32 and np.isfinite(d).all()
    assert (d[sky] == 0).all() and d[~sky].min() > 0 and d[~sky].max() > 2 * d[~sky].min()
    d2 = pseudo_disparity(img, np.random.default_rng(0), kind, sky)
    assert np.array_equal(d, d2)  # seeded


def test_on_the_fly_dataset_is_reproducible_per_index(tmp_path):
    import cv2
    for k in range(2):
        cv2.imwrite(str(tmp_path / f"{k}.png"), textured_image(60, 60, k))
    ds = SyntheticPairs(tmp_path, views_per_image=2, seed=1, resolution=(48, 48))
    a = [ds[i]["image_B"] for i in (3, 0, 1)]
    b = [SyntheticPairs(tmp_path, views_per_image=2, seed=1, resolution=(48, 48))[i]["image_B"] for i in (3, 0, 1)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[1], a[2])  # two views of the same photo differ
