from pathlib import Path

import pytest
import torch

import l2m.models.zoo as zoo
from l2m.models.checkpoint import CheckpointMismatchError, MissingCheckpointError
from l2m.models.vit import load_dinov2_weights
from l2m_test_models import textured_pair

SPEC = Path(__file__).resolve().parents[3] / ".." / "shared" / "spec" / "l2m_matcher_state_dict_keys.tsv"


def _spec_shapes() -> dict[str, tuple[int, ...]]:
    if not SPEC.is_file():
        pytest.skip(f"spec file {SPEC} not found")
    out = {}
    for line in SPEC.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")
        out[key] = tuple(int(x) for x in shape.strip("[]").split(",") if x.strip())
    return out


@pytest.fixture(scope="module")
def l2mpp():
    torch.manual_seed(0)
    return zoo.build_model("l2m++", weights="random")


@pytest.fixture()
def no_files(tmp_path, monkeypatch):
    monkeypatch.setenv("L2M_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(zoo, "BUNDLED_DIR", tmp_path / "bundled")
    return tmp_path


def test_l2mpp_state_dict_matches_spec_exactly(l2mpp):
    spec = _spec_shapes()
    own = {k: tuple(v.shape) for k, v in l2mpp.state_dict().items()}
    assert len(spec) == 603
    assert own == spec
    assert abs(sum(p.numel() for p in l2mpp.parameters()) - 111.29e6) < 0.01e6
    assert abs(sum(p.numel() for p in l2mpp.coarse_encoder.parameters()) - 304.4e6) < 0.1e6


def test_l2mpp_spec_shaped_file_loads_strictly_and_bad_one_fails(l2mpp):
    sd = {k: torch.full(s, 0.5) if s else torch.tensor(7) for k, s in _spec_shapes().items()}
    zoo.load_matcher_weights(l2mpp, sd)
    assert float(l2mpp.decoder.gps["16"].pos_conv.bias[0]) == 0.5
    zoo.load_matcher_weights(l2mpp, {"state_dict": {"model." + k: v for k, v in sd.items()}})
    bad = dict(sd)
    bad.pop("decoder.conv_refiner.1.out_conv.bias")
    bad["decoder.proj.16.0.weight"] = torch.zeros(512, 768, 1, 1)
    bad["decoder.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError) as e:
        zoo.load_matcher_weights(l2mpp, bad)
    msg = str(e.value)
    assert "decoder.conv_refiner.1.out_conv.bias" in msg and "decoder.extra" in msg
    assert "decoder.proj.16.0.weight: file (512, 768, 1, 1) vs model (512, 1024, 1, 1)" in msg


def test_l2mpp_coarse_encoder_loads_dinov2_format_separately(l2mpp):
    vit = l2mpp.coarse_encoder
    sd = {k: v.clone() for k, v in vit.vit.state_dict().items()}
    sd["blocks.0.ls1.gamma"] = torch.full_like(sd["blocks.0.ls1.gamma"], 0.25)
    sd["mask_token"] = torch.zeros(1, 1024)
    load_dinov2_weights(vit, sd)
    assert float(vit.vit.blocks[0].ls1.gamma[0]) == 0.25
    assert len(l2mpp.state_dict()) == 603  # the ViT stays outside the matcher state dict


@pytest.mark.parametrize("variant", ["l2m-tiny", "l2m-vitb"])
def test_save_strict_load_round_trip(variant, tmp_path):
    torch.manual_seed(0)
    m = zoo.build_model(variant, weights="random")
    for mod in m.modules():  # make BN statistics non-default so the round trip is checked on them too
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_var.fill_(2.0)
    path = zoo.save_matcher_weights(m, tmp_path / f"{variant}.pt")
    torch.manual_seed(1)
    kw = {"coarse_weights": "random"} if variant != "l2m-tiny" else {}
    m2 = zoo.build_model(variant, weights=path, **kw)
    a, b = m.state_dict(), m2.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if variant == "l2m-tiny":
        assert path.stat().st_size < 25e6
        pair = textured_pair(96, 128)
        m.conf.update(coarse_res=96)
        m2.conf.update(coarse_res=96)
        with torch.no_grad():
            assert torch.equal(m.match(*pair).warp, m2.match(*pair).warp)


def test_vitb_takes_the_iccv_model_format_encoder(tmp_path, no_files):
    torch.manual_seed(0)
    m = zoo.build_model("l2m-vitb", weights="random")
    sd = {"model." + k: v + 1 for k, v in m.coarse_encoder.vit.state_dict().items()}
    torch.save({"model": sd, "epoch": 0}, tmp_path / "l2m_vit_base.pth")
    zoo.save_matcher_weights(m, tmp_path / "l2m_vitb.pt")
    m2 = zoo.build_model("l2m-vitb", weights=tmp_path / "l2m_vitb.pt", coarse_weights=tmp_path / "l2m_vit_base.pth")
    assert torch.equal(m2.coarse_encoder.vit.cls_token, m.coarse_encoder.vit.cls_token + 1)
    assert m2.decoder.proj["16"][0].in_channels == 768


def test_missing_files_name_the_file_and_the_folder(no_files):
    with pytest.raises(MissingCheckpointError) as e:
        zoo.build_model("l2m-tiny")
    assert "l2m_tiny.pt" in str(e.value) and str(no_files / "home" / "checkpoints") in str(e.value)
    assert str(no_files / "bundled") in str(e.value)
    with pytest.raises(MissingCheckpointError, match="l2m_vit_base.pth"):
        zoo.build_model("l2m-vitb")
    with pytest.raises(ValueError, match="available"):
        zoo.build_model("l2m-huge")


def test_bundled_tiny_weights_are_found_first(no_files, monkeypatch):
    torch.manual_seed(0)
    m = zoo.build_model("l2m-tiny", weights="random", pretrained_backbone=False)
    (no_files / "bundled").mkdir()
    (no_files / "home" / "checkpoints").mkdir(parents=True)
    zoo.save_matcher_weights(m, no_files / "bundled" / "l2m_tiny.pt")
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    sd["decoder.gps.16.pos_conv.bias"] += 1
    torch.save(sd, no_files / "home" / "checkpoints" / "l2m_tiny.pt")
    loaded = zoo.build_model("l2m-tiny")
    assert torch.equal(loaded.decoder.gps["16"].pos_conv.bias, m.decoder.gps["16"].pos_conv.bias)


@pytest.mark.parametrize("variant", sorted(zoo.VARIANTS))
def test_every_variant_default_resolution_is_valid(variant, l2mpp):
    """The default coarse / upsample sizes pass the variant's own checks (864 is not a multiple of 14)."""
    v = zoo.VARIANTS[variant]
    model = l2mpp if variant == "l2m++" else zoo.build_model(variant, weights="random", pretrained_backbone=False)
    for key in ("coarse_res", "upsample_res"):
        res = v.conf[key]
        hw = (res, res) if isinstance(res, int) else tuple(res)
        model._check_res(hw, key)  # raises on a bad default
    assert model.upsample_multiple == v.upsample_multiple and model.res_multiple == v.res_multiple


def test_fast_preset_is_tiny_with_a_lighter_second_pass():
    fast = zoo.build_model("l2m-tiny-fast", weights="random", pretrained_backbone=False)
    tiny = zoo.build_model("l2m-tiny", weights="random", pretrained_backbone=False)
    assert fast.variant == tiny.variant == "l2m-tiny"
    assert fast.conf["upsample_res"] == (480, 640) and tuple(fast.conf["upsample_levels"]) == (4, 2, 1)
    assert tiny.conf["upsample_res"] == 800 and tiny.conf["upsample_levels"] is None
    assert fast.conf["cycle_px"] == tiny.conf["cycle_px"] == 2.0
    assert fast.state_dict().keys() == tiny.state_dict().keys()
    with pytest.raises(ValueError, match="l2m-tiny-fast"):  # unknown names list the presets too
        zoo.build_model("l2m-huge")
