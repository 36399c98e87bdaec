import pytest
import torch

from l2m.models.checkpoint import CheckpointMismatchError
from l2m.models.vit import DinoV2Encoder, load_dinov2_weights


@pytest.fixture(scope="module")
def vits():
    torch.manual_seed(0)
    return DinoV2Encoder("small").eval()


def test_patch_token_map_shape(vits):
    with torch.no_grad():
        assert vits(torch.rand(2, 3, 112, 154)).shape == (2, 384, 8, 11)
    with pytest.raises(ValueError, match="multiple of 14"):
        vits(torch.rand(1, 3, 100, 112))


def test_key_names_are_dinov2(vits):
    sd = vits.vit.state_dict()
    assert len(sd) == 174 and tuple(sd["pos_embed"].shape) == (1, 1370, 384)
    assert "blocks.11.ls2.gamma" in sd and "mask_token" not in sd


def test_fb_dinov2_format_loads_and_drops_mask_token(vits, tmp_path):
    sd = {k: v + 0.01 for k, v in vits.vit.state_dict().items()}
    sd["mask_token"] = torch.zeros(1, 384)
    torch.save(sd, tmp_path / "dinov2_vits14.pth")
    other = DinoV2Encoder("small")
    load_dinov2_weights(other, tmp_path / "dinov2_vits14.pth")
    x = torch.rand(1, 3, 56, 56)
    assert torch.equal(other.vit.pos_embed, sd["pos_embed"])
    with torch.no_grad():
        assert not torch.allclose(other(x), vits(x))


def test_fit3d_vitb_model_format_loads():
    """The ICCV 3D-aware ViT-B/14 file: {'model': {'model.<timm key>': ...}, 'optimizer', 'epoch', 'args'}."""
    torch.manual_seed(1)
    enc = DinoV2Encoder("base")
    sd = enc.vit.state_dict()
    assert len(sd) == 174 and tuple(sd["blocks.0.attn.qkv.weight"].shape) == (2304, 768)
    ckpt = {"model": {"model." + k: v * 0 + 1 for k, v in sd.items()}, "optimizer": {}, "epoch": 0}
    load_dinov2_weights(enc, ckpt["model"])
    assert float(enc.vit.blocks[3].mlp.fc1.weight.detach().mean()) == 1.0


def test_wrong_size_fails_with_report(vits, tmp_path):
    sd = vits.vit.state_dict()
    sd.pop("norm.bias")
    with pytest.raises(CheckpointMismatchError, match="norm.bias"):
        load_dinov2_weights(DinoV2Encoder("small"), sd)
