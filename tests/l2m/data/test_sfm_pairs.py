"""Real-pair sparse supervision: covisible correspondences of a COLMAP model, exact crops of both views."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from l2m.data.sfm_pairs import SfmPairs, SparsePair, covisible_pairs


def _smooth_image(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)


def _write_model(root: Path, n_points: dict[tuple[int, ...], int]) -> tuple[Path, Path]:
    """Three 160x120 images; `n_points[(ids...)]` 3D points seen by those images (pixel = point index)."""
    images, model = root / "images", root / "model"
    images.mkdir(parents=True)
    model.mkdir()
    for i in (1, 2, 3):
        cv2.imwrite(str(images / f"im{i}.png"), _smooth_image(160, 120, i))
    obs: dict[int, list[tuple[float, float, int]]] = {1: [], 2: [], 3: []}
    points = []
    pid = 0
    for ids, n in n_points.items():
        for _ in range(n):
            pid += 1
            track = []
            for i in ids:
                obs[i].append((10.0 + pid + i, 20.0 + 0.5 * pid, pid))  # x depends on the image: a "motion"
                track += [i, len(obs[i]) - 1]
            points.append(f"{pid} 0 0 1 0 0 0 0.5 " + " ".join(map(str, track)))
    (model / "cameras.txt").write_text("1 PINHOLE 160 120 100 100 80 60\n")
    lines = []
    for i in (1, 2, 3):
        lines.append(f"{i} 1 0 0 0 0 0 {i} 1 im{i}.png")
        lines.append(" ".join(f"{x} {y} {p}" for x, y, p in obs[i]))
    (model / "images.txt").write_text("\n".join(lines) + "\n")
    (model / "points3D.txt").write_text("\n".join(points) + "\n")
    return images, model


def test_covisible_pairs_are_the_shared_observations(tmp_path):
    images, model = _write_model(tmp_path, {(1, 2): 30, (1, 2, 3): 20, (2, 3): 5})
    pairs = covisible_pairs(model, images, min_points=21)
    assert [(p.path_A.name, p.path_B.name, len(p.xy_A)) for p in pairs] == [("im1.png", "im2.png", 50),
                                                                             ("im2.png", "im3.png", 25)]
    p12 = pairs[0]
    assert np.allclose(p12.xy_B[:, 0] - p12.xy_A[:, 0], 1.0) and np.allclose(p12.xy_B[:, 1], p12.xy_A[:, 1])
    with pytest.raises(FileNotFoundError, match="not a COLMAP model"):
        covisible_pairs(tmp_path / "nothing", images)
    (images / "im3.png").unlink()
    with pytest.raises(FileNotFoundError, match="im3.png"):
        covisible_pairs(model, images, min_points=21)


@pytest.mark.parametrize("size", [(400, 300), (96, 80)])  # shrunk (area filter) and enlarged
def test_crops_keep_correspondences_exact(tmp_path, size):
    """Both views of one image with identity correspondences: after two independent random crops, the
    pixels at sparse_A in crop A and at sparse_B in crop B are the same image point (equal colours)."""
    w, h = size
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), _smooth_image(w, h))
    rng = np.random.default_rng(1)
    xy = np.c_[rng.uniform(0, w, 400), rng.uniform(0, h, 400)].astype(np.float32)
    ds = SfmPairs([SparsePair(path, path, xy, xy)], (64, 96), repeats=6, max_points=256, zoom=(1.0, 1.3))
    assert len(ds) == 6
    errs = []
    for i in range(len(ds)):
        item = ds[i]
        v = item["sparse_valid"]
        assert item["image_A"].shape == (3, 64, 96) and 16 <= int(v.sum()) <= 256
        assert not torch.equal(item["sparse_A"][v], item["sparse_B"][v])  # the two crops differ
        cols = [F.grid_sample(item[f"image_{t}"][None], item[f"sparse_{t}"][v][None, :, None], align_corners=False)
                for t in "AB"]
        errs.append(float((cols[0] - cols[1]).abs().mean()))
        assert (item["sparse_A"][~v] == 0).all()
    assert np.mean(errs) < 0.01  # same point in both crops (colour values in [0, 1])
    again = ds[3]
    assert torch.equal(again["sparse_A"], ds[3]["sparse_A"])  # reproducible per index


def test_mixed_training_set_has_the_asked_share_of_real_pairs(tmp_path):
    from l2m.train.datasets import build_pair_datasets

    images, model = _write_model(tmp_path / "scene", {(1, 2): 60, (2, 3): 60})
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        cv2.imwrite(str(photos / f"p{i}.png"), _smooth_image(96, 64, 10 + i))
    conf = {"images": str(photos), "views_per_image": 4, "val_images": 1, "engine": {"size": 64},
            "sfm": [{"images": str(images), "model": str(model)}], "sfm_fraction": 0.5, "sfm_max_points": 64}
    train, val = build_pair_datasets(conf, (64, 64))
    assert len(train) == 16 + 2 * 8  # 4 photos x 4 views, then 2 real pairs repeated 8 times
    dense, real = train[0], train[len(train) - 1]
    assert set(dense) == set(real) and bool(dense["dense"]) and not bool(real["dense"])
    assert real["sparse_valid"].sum() > 0 and dense["sparse_valid"].sum() == 0
    assert "dense" not in val[0]
    with pytest.raises(ValueError, match="data.sfm entries"):
        build_pair_datasets({**conf, "sfm": [str(model)]}, (64, 64))
