import pytest
import torch
from torch import nn

from l2m.models.checkpoint import (CheckpointMismatchError, MissingCheckpointError, cache_dir, load_into,
                                   read_state_dict, resolve_checkpoint, unwrap_state_dict)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))


@pytest.mark.parametrize("wrap", ["flat", "model", "state_dict", "module", "model.", "module.model."])
def test_accepted_layouts_load_strictly(tmp_path, wrap):
    src = _net().state_dict()
    if wrap == "flat":
        obj = src
    elif wrap in ("model", "state_dict"):
        obj = {wrap: {("model." if wrap == "state_dict" else "") + k: v for k, v in src.items()}, "epoch": 3}
    else:
        prefix = {"module": "module.", "model.": "model.", "module.model.": "module.model."}[wrap]
        obj = {prefix + k: v for k, v in src.items()}
    torch.save(obj, tmp_path / "w.pt")
    dst = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    assert load_into(dst, read_state_dict(tmp_path / "w.pt")) == ([], [], [])
    assert all(torch.equal(dst.state_dict()[k], v) for k, v in src.items())


def test_prefix_is_stripped_only_at_the_start():
    sd = unwrap_state_dict({"model.encoder.model.x": torch.zeros(1)})
    assert list(sd) == ["encoder.model.x"]


def test_mismatch_report_lists_missing_unexpected_and_shapes():
    sd = _net().state_dict()
    sd.pop("0.bias")
    sd["extra.weight"] = torch.zeros(2)
    sd["1.weight"] = torch.zeros(5)
    with pytest.raises(CheckpointMismatchError) as e:
        load_into(_net(), sd, source="file x.pt")
    msg = str(e.value)
    assert "1 missing" in msg and "0.bias" in msg
    assert "1 unexpected" in msg and "extra.weight" in msg
    assert "1 mis-shaped" in msg and "1.weight: file (5,) vs model (4,)" in msg and "x.pt" in msg


def test_non_strict_returns_report_and_loads_the_rest():
    sd = _net().state_dict()
    sd.pop("0.bias")
    dst = _net()
    with torch.no_grad():
        dst[0].weight.zero_()
    missing, unexpected, shapes = load_into(dst, sd, strict=False)
    assert missing == ["0.bias"] and not unexpected and not shapes
    assert torch.equal(dst[0].weight, sd["0.weight"])


def test_names_resolve_in_cache_dir_and_missing_file_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("L2M_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "checkpoints"
    with pytest.raises(MissingCheckpointError) as e:
        resolve_checkpoint("l2m++_560x560.pth", what="l2m++ matcher")
    assert "l2m++_560x560.pth" in str(e.value) and str(tmp_path / "checkpoints") in str(e.value)
    (tmp_path / "checkpoints").mkdir()
    torch.save({}, tmp_path / "checkpoints" / "l2m++_560x560.pth")
    assert resolve_checkpoint("l2m++_560x560.pth") == tmp_path / "checkpoints" / "l2m++_560x560.pth"


def test_weights_only_refuses_pickled_objects(tmp_path):
    from collections import OrderedDict
    import fractions

    torch.save({"x": fractions.Fraction(1, 3)}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError, match="bad.pt"):
        read_state_dict(tmp_path / "bad.pt")


def test_fit3d_file_with_argparse_namespace_loads(tmp_path):
    import argparse

    torch.save({"model": {"model.w": torch.ones(2)}, "args": argparse.Namespace(lr=1e-5), "epoch": 1},
               tmp_path / "fit3d.pth")
    assert list(read_state_dict(tmp_path / "fit3d.pth")) == ["w"]
