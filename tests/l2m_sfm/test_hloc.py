"""The hloc plugin against hloc's BaseModel / dynamic_load contract (spec A7), without importing hloc."""
import inspect
import sys
import types
from abc import ABCMeta, abstractmethod

import numpy as np
import pytest
import torch
from torch import nn

from l2m_sfm import hloc as plugin


class FakeBaseModel(nn.Module, metaclass=ABCMeta):
    """Mirror of hloc.utils.base_model.BaseModel (A7)."""

    default_conf = {}
    required_inputs = []

    def __init__(self, conf):
        super().__init__()
        self.conf = conf = {**self.default_conf, **conf}
        self.required_inputs = self.required_inputs.copy()
        self._init(conf)

    def forward(self, data):
        for key in self.required_inputs:
            assert key in data, "Missing key {} in data".format(key)
        return self._forward(data)

    @abstractmethod
    def _init(self, conf):
        raise NotImplementedError

    @abstractmethod
    def _forward(self, data):
        raise NotImplementedError


def fake_dynamic_load(module_name):
    """hloc.utils.base_model.dynamic_load: exactly one BaseModel subclass defined in that module."""
    module = sys.modules[module_name]
    classes = inspect.getmembers(module, inspect.isclass)
    classes = [c for c in classes if c[1].__module__ == module.__name__]
    classes = [c for c in classes if issubclass(c[1], FakeBaseModel)]
    assert len(classes) == 1, classes
    return classes[0][1]


def test_confs_have_hloc_dense_shape():
    for name, conf in plugin.confs.items():
        assert set(conf) == {"output", "model", "preprocessing", "max_error", "cell_size"}
        assert conf["model"]["name"] == "l2m" and conf["output"].startswith("matches-")
        assert conf["model"]["variant"] in (*plugin.LOFTR_VARIANTS, "l2m-tiny", "l2m-tiny-fast", "l2m-vitb", "l2m++")
        assert conf["preprocessing"]["grayscale"] is False
        assert conf["max_error"] > 0 and conf["cell_size"] >= conf["max_error"]
    assert len({c["output"] for c in plugin.confs.values()}) == len(plugin.confs)


@pytest.fixture()
def registered(monkeypatch):
    module = types.ModuleType(plugin.MODULE_NAME)
    cls = plugin.make_model_class(FakeBaseModel)
    module.L2MDense = cls
    monkeypatch.setitem(sys.modules, plugin.MODULE_NAME, module)
    return cls


def test_dynamic_load_finds_exactly_one_class(registered):
    assert fake_dynamic_load(plugin.MODULE_NAME) is registered
    assert registered.__module__ == plugin.MODULE_NAME and registered.required_inputs == ["image0", "image1"]


def test_model_forward_contract(registered):
    conf = dict(plugin.confs["l2m"]["model"], weights="random", coarse_res=64, num_samples=200, max_num_matches=150)
    model = registered(conf).eval()
    assert model.conf["sample_thresh"] == 0.05  # defaults merged
    # the variant's inference defaults apply unless overridden; 0 switches a pass / the cycle check off
    assert model.net.conf["upsample_res"] == 800 and model.net.conf["cycle_px"] == 2.0
    off = registered({**conf, "upsample_res": 0, "cycle_px": 0, "upsample_levels": [2, 1]})
    assert off.net.conf["upsample_res"] is None and off.net.conf["cycle_px"] is None
    assert off.net.conf["upsample_levels"] == [2, 1]
    with pytest.raises(AssertionError, match="Missing key image1"):
        model({"image0": torch.rand(1, 3, 48, 64)})
    rng = np.random.default_rng(0)
    im0 = torch.from_numpy(rng.random((1, 3, 48, 64), dtype=np.float32))
    im1 = torch.from_numpy(rng.random((1, 1, 40, 56), dtype=np.float32))
    with torch.no_grad():
        pred = model({"image0": im0, "image1": im1})
    k0, k1, s = pred["keypoints0"], pred["keypoints1"], pred["scores"]
    assert k0.dtype == torch.float32 and k0.ndim == 2 and k0.shape[1] == 2 and k1.shape == k0.shape
    assert s.shape == (len(k0),) and 0 < len(k0) <= 150
    assert k0[:, 0].min() >= -0.5 and k0[:, 0].max() <= 63.5 and k0[:, 1].max() <= 47.5
    assert k1[:, 0].max() <= 55.5 and k1[:, 1].max() <= 39.5
    assert len(k0) < 150 or torch.all(s[:-1] >= s[1:])  # truncated by top-k: sorted by certainty


def test_loftr_confs_run_the_official_file(registered, tmp_path):
    """confs["loftr"]: the model loads LoFTR from the given file (official layout, random weights) and returns
    keypoints in pixels of the preprocessed RGB images."""
    from l2m_sfm.loftr_matcher import write_random_checkpoint

    path = write_random_checkpoint(tmp_path / "outdoor_ds.ckpt")
    model = registered(dict(plugin.confs["loftr"]["model"], weights=str(path), match_thr=0.0)).eval()
    assert type(model.net).__name__ == "LoFTR"
    rng = np.random.default_rng(1)
    im0 = torch.from_numpy(rng.random((1, 3, 96, 128), dtype=np.float32))
    im1 = torch.from_numpy(rng.random((1, 3, 80, 112), dtype=np.float32))
    with torch.no_grad():
        pred = model({"image0": im0, "image1": im1})
    k0, k1 = pred["keypoints0"], pred["keypoints1"]
    assert len(k0) > 0 and k0.shape == k1.shape and pred["scores"].shape == (len(k0),)
    assert k0[:, 0].max() <= 127.5 and k1[:, 0].max() <= 111.5 and k1[:, 1].max() <= 79.5


def test_register_without_hloc_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "hloc", None)
    with pytest.raises(ImportError, match="needs hloc installed"):
        plugin.register()


def test_match_anchored_writes_hloc_matches_between_given_keypoints(tmp_path):
    import cv2
    import numpy as np

    from l2m_sfm import h5io
    from l2m_sfm import hloc as l2m_hloc

    rng = np.random.default_rng(0)
    names = ["a.png", "b.png"]
    for n in names:
        cv2.imwrite(str(tmp_path / n), rng.integers(0, 255, (60, 90, 3)).astype(np.uint8))
        h5io.write_keypoints(tmp_path / "feats.h5", n, rng.uniform(0, [89, 59], (50, 2)), np.ones(50),
                             rng.normal(size=(50, 8)), (90, 60))
    (tmp_path / "pairs.txt").write_text("a.png b.png\n")
    ref = np.stack([np.arange(12), np.arange(12)], 1)
    h5io.write_matches(tmp_path / "ref.h5", "a.png", "b.png", *h5io.matches_to_matches0(ref, np.ones(12), 50))
    conf = {**l2m_hloc.anchored_confs["l2m-anchored"],
            "model": {"name": "l2m", "variant": "l2m-tiny", "weights": "random", "coarse_res": 64, "upsample_res": 0}}
    conf["anchored"] = {**conf["anchored"], "combine": "union", "gate": {"min_agreement": 0, "agree_radius_px": 4.0,
                                                                         "min_area": 0.0}}
    out = l2m_hloc.match_anchored(conf, tmp_path / "pairs.txt", tmp_path, tmp_path / "feats.h5",
                                  tmp_path / "matches.h5", matches_ref=tmp_path / "ref.h5")
    m, _ = h5io.read_matches(out, "a.png", "b.png")
    assert set(map(tuple, ref.tolist())) <= set(map(tuple, m.tolist()))  # union keeps the detector's matches
    assert m.max() < 50 and len(set(m[:, 0].tolist())) == len(m)
    # without `combine`, the mode follows matches_ref: union with it (as reconstruct), dense only without it
    conf["anchored"] = {k: v for k, v in conf["anchored"].items() if k != "combine"}
    dense = l2m_hloc.match_anchored(conf, tmp_path / "pairs.txt", tmp_path, tmp_path / "feats.h5",
                                    tmp_path / "dense.h5")
    union = l2m_hloc.match_anchored(conf, tmp_path / "pairs.txt", tmp_path, tmp_path / "feats.h5",
                                    tmp_path / "union.h5", matches_ref=tmp_path / "ref.h5")
    d, _ = h5io.read_matches(dense, "a.png", "b.png")
    u, _ = h5io.read_matches(union, "a.png", "b.png")
    assert set(map(tuple, u.tolist())) == set(map(tuple, m.tolist()))
    assert not set(map(tuple, ref.tolist())) <= set(map(tuple, d.tolist()))  # random weights: dense != detector
