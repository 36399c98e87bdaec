"""LoFTR from the official checkpoint layout: strict loading, the file search, one-line errors, the matcher, the
hloc entry and reconstruct. Weights are random (written by `write_random_checkpoint` in the official layout):
the matches are meaningless, these tests check the plumbing and the coordinate conventions."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from l2m.models.checkpoint import CheckpointMismatchError, MissingCheckpointError
from l2m_sfm import loftr_matcher as lm
from l2m_sfm.matchers import get_matcher, matcher_identity

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "datasets" / "samples" / "toybox"


@pytest.fixture(scope="module")
def outdoor_file(tmp_path_factory) -> Path:
    return lm.write_random_checkpoint(tmp_path_factory.mktemp("loftr") / "outdoor_ds.ckpt", "outdoor", seed=3)


@pytest.fixture()
def l2m_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    (home / "checkpoints").mkdir(parents=True)
    monkeypatch.setenv("L2M_HOME", str(home))
    return home / "checkpoints"


def test_written_file_has_the_official_lightning_layout(outdoor_file):
    obj = torch.load(outdoor_file, weights_only=True)
    keys = list(obj["state_dict"])
    assert all(k.startswith("matcher.") for k in keys)
    assert "matcher.backbone.conv1.weight" in keys and "matcher.loftr_coarse.layers.0.q_proj.weight" in keys
    assert len(keys) == len(lm.build_network("outdoor").state_dict())


def test_official_file_loads_strictly_and_exactly(outdoor_file):
    net = lm.load_network("outdoor", outdoor_file)
    stored = torch.load(outdoor_file, weights_only=True)["state_dict"]
    for key, value in net.state_dict().items():
        assert torch.equal(value, stored["matcher." + key]), key


def test_bare_state_dict_layout_loads_too(outdoor_file, tmp_path):
    """The released files of zju3dv/LoFTR may also hold the keys without the Lightning prefix."""
    stored = torch.load(outdoor_file, weights_only=True)["state_dict"]
    bare = tmp_path / "bare.ckpt"
    torch.save({"state_dict": {k[len("matcher."):]: v for k, v in stored.items()}}, bare)
    net = lm.load_network("outdoor", bare)
    assert torch.equal(net.state_dict()["backbone.conv1.weight"], stored["matcher.backbone.conv1.weight"])


def test_indoor_variant_uses_the_fixed_position_encoding(tmp_path):
    assert lm.build_network("indoor").config["coarse"]["temp_bug_fix"] is True
    assert lm.build_network("outdoor").config["coarse"]["temp_bug_fix"] is False
    path = lm.write_random_checkpoint(tmp_path / "indoor_ds_new.ckpt", "indoor")
    assert lm.load_network("indoor", path).config["coarse"]["temp_bug_fix"] is True


def test_default_file_is_found_in_l2m_home(outdoor_file, l2m_home):
    (l2m_home / "outdoor_ds.ckpt").symlink_to(outdoor_file)
    assert lm.weight_file("outdoor") == l2m_home / "outdoor_ds.ckpt"
    ident = matcher_identity("loftr", {})
    assert ident["weights"]["name"] == "outdoor_ds.ckpt" and len(ident["weights"]["sha1"]) == 40


def test_missing_file_names_the_file_and_the_folder(l2m_home):
    with pytest.raises(MissingCheckpointError) as e:
        lm.weight_file("indoor")
    assert "indoor_ds_new.ckpt" in str(e.value) and str(l2m_home) in str(e.value)


def test_wrong_file_lists_the_differing_keys(tmp_path):
    wrong = tmp_path / "outdoor_ds.ckpt"
    torch.save({"state_dict": {"matcher.backbone.conv1.weight": torch.zeros(3)}}, wrong)
    with pytest.raises(CheckpointMismatchError, match="missing") as e:
        lm.load_network("outdoor", wrong)
    assert "mis-shaped" in str(e.value) and str(wrong) in str(e.value)


def test_match_pair_returns_pixels_of_the_given_images(outdoor_file):
    """Random weights, threshold 0 so that matches exist; input 200x150 resized to 160x120 (x0.8)."""
    m = get_matcher("loftr", {"weights": str(outdoor_file), "match_thr": 0.0, "resize_max": 160})
    rng = np.random.default_rng(0)
    im0 = rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)
    im1 = rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)
    out = m.match_pair(im0, im1)
    assert m.dense is True and len(out) > 0
    assert out.keypoints0.dtype == np.float32 and out.scores.shape == (len(out),)
    # LoFTR's coarse cells sit on pixels 8i of the 160x120 input, hloc convention: (8i + 0.5) / 0.8 - 0.5
    x = (out.keypoints0[:, 0] + 0.5) * 0.8 - 0.5
    assert np.allclose(x, np.round(x / 8) * 8, atol=1e-3)
    for k in (out.keypoints0, out.keypoints1):
        assert k.min() >= -0.5 and k[:, 0].max() <= 199.5 and k[:, 1].max() <= 149.5
    m.conf["max_matches"] = 5
    capped = m.match_pair(im0, im1)
    assert len(capped) == min(5, len(out))
    assert np.isclose(capped.scores.min(), np.sort(out.scores)[-len(capped)])


def test_reconstruct_with_loftr_weights_flag(outdoor_file, l2m_home, tmp_path):
    """`reconstruct --matcher loftr --weights FILE` matches every pair through the dense path."""
    from l2m_sfm.reconstruct import cli

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("view_00.jpg", "view_01.jpg", "view_02.jpg"):
        shutil.copy(SAMPLE / "images" / name, photos / name)
    out = tmp_path / "out"
    code = cli(["--images", str(photos), "--output", str(out), "--matcher", "loftr", "--weights", str(outdoor_file),
                "matcher.conf.resize_max=160", "matcher.conf.match_thr=0"])
    assert code in (0, 2)  # random matches may not map; matching and quantisation must have run
    with h5py.File(out / "matches.h5", "r") as f:
        assert sum(len(f[a]) for a in f) == 3
    assert json.loads((out / "config.json").read_text())["matcher"]["name"] == "loftr"


def test_reconstruct_missing_loftr_file_is_one_line(l2m_home, tmp_path, capsys):
    from l2m_sfm.reconstruct import cli

    code = cli(["--images", str(SAMPLE / "images"), "--output", str(tmp_path / "out"), "--matcher", "loftr"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "outdoor_ds.ckpt" in err and str(l2m_home) in err


@pytest.mark.slow
def test_real_hloc_match_dense_runs_confs_loftr(outdoor_file, l2m_home, tmp_path, vendored_hloc):
    """The vendored, unchanged hloc matches a pair with confs["loftr"] and the file found in $L2M_HOME."""
    from hloc import match_dense

    from l2m_sfm import hloc as plugin

    (l2m_home / "outdoor_ds.ckpt").symlink_to(outdoor_file)
    plugin.register()
    conf = {**plugin.confs["loftr"], "preprocessing": {**plugin.confs["loftr"]["preprocessing"], "resize_max": 160},
            "model": {**plugin.confs["loftr"]["model"], "match_thr": 0.0}}
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("view_00.jpg view_01.jpg\n")
    features, matches = match_dense.main(conf, pairs, SAMPLE / "images", export_dir=tmp_path)
    with h5py.File(features, "r") as f:
        assert len(f["view_00.jpg"]["keypoints"]) > 0
    assert Path(matches).is_file()
