import numpy as np
import pytest
import torch

from l2m.models.checkpoint import CheckpointMismatchError
from l2m.models.vit import DinoV2Encoder, dinov2_pos_embed, load_dinov2_weights


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


def _cubic_weights(t: float, a: float = -0.75) -> np.ndarray:
    """Keys cubic-convolution weights of the 4 taps at offsets -1, 0, 1, 2 for a fractional position t."""
    def k(x):
        x = abs(x)
        return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1 if x <= 1 else a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
    return np.array([k(t + 1), k(t), k(1 - t), k(2 - t)])


def _resize_by_definition(grid: np.ndarray, out: int, scale: float) -> np.ndarray:
    """1-D bicubic resize along axis 0 with source position (i + 0.5) / scale - 0.5, indices clamped."""
    n = grid.shape[0]
    rows = []
    for i in range(out):
        src = (i + 0.5) / scale - 0.5
        i0 = int(np.floor(src))
        taps = [min(max(i0 + d, 0), n - 1) for d in (-1, 0, 1, 2)]
        rows.append(np.tensordot(_cubic_weights(src - i0), grid[taps], axes=1))
    return np.stack(rows)


@pytest.mark.parametrize("h,w", [(37, 37), (40, 40), (40, 48), (20, 20)])
def test_pos_embed_follows_the_dinov2_rule(h, w):
    """518 px (37×37 tokens) keeps the grid; elsewhere: bicubic by scale factor (n + 0.1) / 37, no antialias."""
    torch.manual_seed(0)
    pos = torch.randn(1, 1 + 37 * 37, 6)
    got = dinov2_pos_embed(pos, h, w)
    assert got.shape == (1, 1 + h * w, 6)
    assert torch.equal(got[:, 0], pos[:, 0])  # the class token's embedding is never resized
    if (h, w) == (37, 37):
        assert torch.equal(got, pos)
        return
    grid = pos[0, 1:].reshape(37, 37, 6).double().numpy()
    ref = _resize_by_definition(grid, h, (h + 0.1) / 37)  # rows
    ref = _resize_by_definition(ref.transpose(1, 0, 2), w, (w + 0.1) / 37).transpose(1, 0, 2)  # columns
    assert np.abs(got[0, 1:].reshape(h, w, 6).numpy() - ref).max() < 5e-5  # fp32 vs float64


def test_pos_embed_sampling_positions_are_pinned_at_560():
    """A ramp pos_embed (value = column index) read back at 560 px (40 tokens). Token j samples source column
    s = (j + 0.5)·37 / 40.1 − 0.5 (j = 20: s = 18.4152) with Keys' cubic (a = −0.75), which bends a line by
    ~0.02 between taps: 18.43580 and 4.55653, worked by hand from the 4 taps. timm's rule gives 18.4625, 4.5875."""
    ramp = torch.arange(37.0).repeat(37)[None, :, None]  # (1, 37², 1), value = column
    pos = torch.cat((torch.zeros(1, 1, 1), ramp), dim=1)
    cols = dinov2_pos_embed(pos, 40, 40)[0, 1:, 0].reshape(40, 40)[20]
    assert abs(float(cols[20]) - 18.43580) < 1e-4
    assert abs(float(cols[5]) - 4.55653) < 1e-4
    assert abs(float(cols[0]) + 0.02679) < 1e-4  # the border taps are clamped


def test_encoder_tokens_use_the_dinov2_rule(vits):
    """The encoder adds dinov2_pos_embed: tokens equal a hand-written DINOv2 forward at 560 (not timm's)."""
    x = torch.rand(1, 3, 560, 560)
    v = vits.vit
    with torch.no_grad():
        t = v.patch_embed(x).reshape(1, 1600, 384)
        t = torch.cat((v.cls_token, t), 1) + dinov2_pos_embed(v.pos_embed, 40, 40)
        ref = v.norm(v.blocks(t))[:, 1:].transpose(1, 2).reshape(1, 384, 40, 40)
        timm_tokens = v.forward_features(x)[:, 1:].transpose(1, 2).reshape(1, 384, 40, 40)
        got = vits(x)
    assert (got - ref).abs().max() < 1e-5
    assert (got - timm_tokens).abs().max() > 1e-2  # the two rules really differ at this size
