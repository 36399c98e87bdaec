from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from l2m.images import ImageReadError, image_size, list_images, read_image
from l2m_sfm.images import main


def _gradient(w=40, h=24):
    x = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h)[:, None].repeat(w, 1)
    return np.stack([x, y, 255 - x], -1).astype(np.uint8)


def test_exif_rotation_swaps_dims_and_moves_corner(tmp_path):
    arr = np.zeros((20, 30, 3), np.uint8)
    arr[0, 0] = (255, 0, 0)  # red at stored top-left
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # camera rotated: display = stored rotated 90 deg clockwise
    img.save(tmp_path / "r.png", exif=exif)
    out = read_image(tmp_path / "r.png")
    assert out.shape == (30, 20, 3)
    assert image_size(tmp_path / "r.png") == (20, 30)
    # 90 deg clockwise: stored top-left goes to the top-right corner
    assert tuple(out[0, -1]) == (255, 0, 0)
    assert out[0, 0].sum() == 0


def test_16bit_gray_png_scaled_by_real_range(tmp_path):
    arr = np.linspace(1000, 4095, 64 * 8).reshape(8, 64).astype(np.uint16)  # 12-bit data in 16-bit container
    Image.fromarray(arr).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert out.shape == (8, 64, 3) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255  # not 15 as a >>8 would give
    assert np.all(out[..., 0] == out[..., 1])


def test_16bit_colour_png_full_depth(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rgb = np.zeros((6, 10, 3), np.uint16)
    rgb[..., 0] = 4000  # red channel strongest
    rgb[..., 1] = np.arange(10)[None, :] * 200
    rgb[0, 0] = 0
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[..., ::-1])
    out = read_image(tmp_path / "c16.png")
    assert out.shape == (6, 10, 3)
    assert out[1, 0, 0] == 255 and out[0, 0].sum() == 0 and out[..., 2].max() == 0


def test_cmyk_jpeg_and_grayscale_and_rgba(tmp_path):
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # pure red in CMYK
    red = read_image(tmp_path / "cmyk.jpg")
    assert red.shape == (8, 16, 3)
    assert red[..., 0].mean() > 200 and red[..., 1].mean() < 50 and red[..., 2].mean() < 50
    Image.new("L", (5, 4), 77).save(tmp_path / "g.png")
    assert np.all(read_image(tmp_path / "g.png") == 77)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2] = (0, 0, 255, 255)  # opaque blue top, fully transparent bottom
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert tuple(out[0, 0]) == (0, 0, 255) and tuple(out[3, 3]) == (255, 255, 255)  # composited on white
    Image.fromarray(_gradient()).save(tmp_path / "w.webp")
    Image.fromarray(_gradient()).save(tmp_path / "t.tif")
    assert read_image(tmp_path / "w.webp").shape == (24, 40, 3)
    assert np.array_equal(read_image(tmp_path / "t.tif"), _gradient())
    Image.fromarray(_gradient()).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (24, 40, 3)


def test_listing_reports_every_bad_file(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    Image.fromarray(_gradient(200, 160)).save(tmp_path / "sub" / "a.jpg", quality=95)
    Image.fromarray(_gradient()).save(tmp_path / "b.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    data = (tmp_path / "sub" / "a.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    Image.fromarray(_gradient()).save(tmp_path / "with space.png")
    Image.fromarray(_gradient()).save(tmp_path / "sub-b.jpg")
    Image.fromarray(_gradient()).save(tmp_path / "sub" / "b.jpg")  # same hloc pair key as sub-b.jpg
    (tmp_path / ".hidden" / "x.jpg").write_bytes(b"")
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    found, skipped = list_images(tmp_path)
    assert found == ["b.png", "sub-b.jpg", "sub/a.jpg", "with space.png"]  # spaces are fine (pairs encode them)
    reasons = dict(skipped)
    assert set(reasons) == {"empty.jpg", "notes.txt", "trunc.jpg", "sub/b.jpg"}
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert reasons["notes.txt"].startswith("not an image")
    assert reasons["trunc.jpg"].startswith("corrupt JPEG")
    assert "collision" in reasons["sub/b.jpg"] and "sub-b.jpg" in reasons["sub/b.jpg"]
    with pytest.raises(ImageReadError, match="trunc.jpg.*corrupt JPEG"):
        read_image(tmp_path / "trunc.jpg")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(tmp_path / "empty.jpg")
    assert main(["--images", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "4 images found" in out and "SKIP  notes.txt: not an image" in out


def test_symlink_loop_is_listed_once(tmp_path):
    (tmp_path / "d").mkdir()
    Image.fromarray(_gradient()).save(tmp_path / "d" / "a.png")
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d", target_is_directory=True)
    found, skipped = list_images(tmp_path)
    assert found == ["d/a.png"] and skipped == []
