"""Real-pair sparse supervision: covisible correspondences of a COLMAP model, exact crops of both views."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data_scenes import smooth_image, write_colmap_model

from l2m.data.sfm_pairs import SfmPairs, SparsePair, covisible_pairs, verified_pairs


def test_covisible_pairs_are_the_shared_observations(tmp_path):
    images, model = write_colmap_model(tmp_path, {(1, 2): 30, (1, 2, 3): 20, (2, 3): 5})
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


def test_verified_pairs_are_the_two_view_inliers(tmp_path):
    import pycolmap

    images = tmp_path / "images"
    images.mkdir()
    db_path = tmp_path / "database.db"
    with pycolmap.Database.open(str(db_path)) as db:
        cid = db.write_camera(pycolmap.Camera(model="PINHOLE", width=100, height=80, params=[50, 50, 50, 40]))
        ids = []
        for k, name in enumerate(("a.png", "b.png", "c.png")):
            cv2.imwrite(str(images / name), smooth_image(100, 80, k))
            ids.append(db.write_image(pycolmap.Image(name=name, camera_id=cid)))
            db.write_keypoints(ids[-1], (np.arange(40, dtype=np.float32).reshape(20, 2) + 100 * k))
        for (i, j), n in (((0, 1), 12), ((1, 2), 3)):
            tvg = pycolmap.TwoViewGeometry()
            tvg.config = pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED
            tvg.inlier_matches = np.stack([np.arange(n), np.arange(n)[::-1]], 1).astype(np.uint32)
            db.write_two_view_geometry(ids[i], ids[j], tvg)
    pairs = verified_pairs(db_path, images, min_matches=10)
    assert [(p.path_A.name, p.path_B.name, len(p.xy_A)) for p in pairs] == [("a.png", "b.png", 12)]
    assert np.allclose(pairs[0].xy_A[0], [0, 1]) and np.allclose(pairs[0].xy_B[0], [122, 123])  # kp 11 of b
    with pytest.raises(FileNotFoundError, match="no COLMAP database"):
        verified_pairs(tmp_path / "none.db", images)


@pytest.mark.parametrize("size", [(400, 300), (96, 80)])  # shrunk (area filter) and enlarged
def test_crops_keep_correspondences_exact(tmp_path, size):
    """Both views of one image with identity correspondences: after two independent random crops, the
    pixels at sparse_A in crop A and at sparse_B in crop B are the same image point (equal colours)."""
    w, h = size
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), smooth_image(w, h))
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

    images, model = write_colmap_model(tmp_path / "scene", {(1, 2): 60, (2, 3): 60})
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        cv2.imwrite(str(photos / f"p{i}.png"), smooth_image(96, 64, 10 + i))
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
