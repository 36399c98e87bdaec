import numpy as np
import pytest
import torch

from l2m.config import ConfigError
from l2m_sfm.matchers import PairMatcher, get_matcher

torch.set_num_threads(1)


def _images():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (60, 90, 3)).astype(np.uint8)
    return a, np.ascontiguousarray(a[:, ::-1]), rng.integers(0, 255, (50, 70, 3)).astype(np.uint8)


def test_l2m_tiny_pair_matcher_outputs_original_pixels():
    m = get_matcher("l2m-tiny", {"weights": "random", "coarse_res": 64, "upsample_res": 0, "num_samples": 300})
    assert isinstance(m, PairMatcher) and m.dense and m.name == "l2m-tiny"
    a, _, c = _images()
    pm = m.match_pair(a, c, "a.jpg", "c.jpg")
    assert 0 < len(pm) <= 300 and pm.keypoints0.dtype == np.float32 and pm.scores.shape == (len(pm),)
    assert pm.keypoints0.min() >= -0.5 and pm.keypoints0[:, 0].max() <= 89.5 and pm.keypoints0[:, 1].max() <= 59.5
    assert pm.keypoints1[:, 0].max() <= 69.5 and pm.keypoints1[:, 1].max() <= 49.5
    # hloc convention x_pix = W/2 (x+1) - 0.5: each symmetric sample has one side on the 64-cell grid
    on_grid = lambda k, w: np.abs((k + 0.5) * 64 / w - 0.5 - np.round((k + 0.5) * 64 / w - 0.5)) < 1e-3  # noqa
    a_grid, c_grid = on_grid(pm.keypoints0[:, 0], 90), on_grid(pm.keypoints1[:, 0], 70)
    assert np.all(a_grid | c_grid) and a_grid.any() and c_grid.any()


def test_feature_cache_reuses_images_by_name():
    m = get_matcher("l2m-tiny", {"weights": "random", "coarse_res": 64, "upsample_res": 0, "num_samples": 100,
                                   "cache_size": 4})
    a, b, c = _images()
    first = m.match_pair(a, b, "a", "b")
    m.match_pair(a, c, "a", "c")
    assert m.model.cache.hits == 1 and m.model.cache.misses == 3
    again = m.match_pair(a, b, "a", "b")
    assert np.array_equal(first.keypoints0, again.keypoints0)


def test_unknown_conf_key_is_an_error():
    with pytest.raises(ConfigError, match="colour"):
        get_matcher("l2m-tiny", {"weights": "random", "colour": 1})
