"""COLMAP backend: +0.5 keypoint convention, TVG configs, cameras with EXIF-applied sizes, option checks,
mapping the sample scene from exact tracks."""
from pathlib import Path

import h5py
import numpy as np
import pycolmap
import pytest
from PIL import Image

from l2m.config import ConfigError
from l2m_sfm import colmap
from l2m_sfm.gt_matcher import GTMatcher
from l2m_sfm.pairs import pairs_exhaustive, write_pairs

SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "toybox"


@pytest.fixture(scope="module")
def tracks(tmp_path_factory):
    """Sparse hloc files with exact tracks (0.3 px noise) for the sample scene, and a database built from them."""
    if not SAMPLE.exists():
        pytest.skip(f"sample scene {SAMPLE} missing")
    out = tmp_path_factory.mktemp("colmap")
    names = sorted(p.name for p in (SAMPLE / "images").iterdir())
    pairs = pairs_exhaustive(names)
    write_pairs(pairs, out / "pairs.txt")
    GTMatcher({"scene": SAMPLE}).write_tracks(out / "features.h5", out / "matches.h5", pairs, step=24,
                                              noise_px=0.3)
    sizes = {n: (640, 480) for n in names}
    with colmap.colmap_logging(out / "colmap.log."):
        ids = colmap.create_database(out / "database.db", SAMPLE / "images", names, sizes)
        counts = colmap.import_features(out / "database.db", ids, out / "features.h5")
        stats = colmap.import_matches(out / "database.db", ids, pairs, out / "matches.h5")
        colmap.verify_matches(out / "database.db")
    return out, names, ids, counts, stats


def test_keypoints_carry_plus_half_exactly(tracks):
    out, names, ids, counts, _ = tracks
    with h5py.File(out / "features.h5", "r") as f, pycolmap.Database.open(str(out / "database.db")) as db:
        for name in names:
            h5 = np.asarray(f[name]["keypoints"], np.float32)
            stored = db.read_keypoints(ids[name])[:, :2]
            assert len(stored) == counts[name] == len(h5) > 100
            np.testing.assert_array_equal(stored, h5 + np.float32(0.5))


def test_matches_imported_and_every_tvg_has_a_config(tracks):
    out, names, ids, _, stats = tracks
    assert stats["pairs"] == 28 and stats["missing"] == 0
    with pycolmap.Database.open(str(out / "database.db")) as db:
        pair_ids, tvgs = db.read_two_view_geometries()
        assert len(tvgs) == 28
        undefined = pycolmap.TwoViewGeometryConfiguration.UNDEFINED
        assert all(t.config != undefined for t in tvgs)
        assert min(len(t.inlier_matches) for t in tvgs) > 50
    diag = colmap.verified_pair_stats(out / "database.db")
    assert diag["verified_pairs"] == 28


def test_mapping_registers_all_and_writes_bin_and_text(tracks):
    out, names, *_ = tracks
    with colmap.colmap_logging(out / "colmap.log."):
        model, summary = colmap.run_mapping(out / "database.db", SAMPLE / "images", out / "models")
    assert model is not None and model.num_reg_images() == 8
    sfm = colmap.write_model(model, out / "sfm")
    for f in ("cameras.bin", "images.bin", "points3D.bin", "text/cameras.txt", "text/images.txt"):
        assert (sfm / f).exists(), f
    stats = colmap.model_stats(pycolmap.Reconstruction(str(sfm)))
    assert stats["registered"] == 8 and stats["points3D"] > 500
    assert stats["mean_reprojection_error_px"] < 0.8
    assert list(out.glob("colmap.log.*")), "the full COLMAP log goes to a file"


def test_exif_rotated_image_gets_rotated_camera(tmp_path):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(tmp_path / "rot.jpg", exif=exif)
    img.save(tmp_path / "plain.jpg")
    from l2m.images import image_size

    names = ["plain.jpg", "rot.jpg"]
    sizes = {n: image_size(tmp_path / n) for n in names}
    ids = colmap.create_database(tmp_path / "db.db", tmp_path, names, sizes)
    with pycolmap.Database.open(str(tmp_path / "db.db")) as db:
        cams = {c.camera_id: c for c in db.read_all_cameras()}
        got = {im.name: (cams[im.camera_id].width, cams[im.camera_id].height) for im in db.read_all_images()}
        assert db.num_frames() == 2 and db.num_rigs() == 2
    assert got == {"plain.jpg": (60, 40), "rot.jpg": (40, 60)}
    assert set(ids) == set(names)


def test_camera_modes_intrinsics_and_exif_focal(tmp_path):
    names = ["a/1.jpg", "a/2.jpg", "b/3.jpg"]
    for n in names:
        (tmp_path / n).parent.mkdir(exist_ok=True)
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0xA405] = 35  # FocalLengthIn35mmFilm
        Image.new("RGB", (64, 48)).save(tmp_path / n, exif=exif)
    sizes = {n: (64, 48) for n in names}
    cams, assign = colmap.plan_cameras(tmp_path, names, sizes, "per-folder")
    assert len(cams) == 2 and assign["a/1.jpg"] == assign["a/2.jpg"] != assign["b/3.jpg"]
    assert cams[0].has_prior_focal_length
    assert cams[0].params[0] == pytest.approx(35 / np.hypot(36, 24) * np.hypot(64, 48))
    assert len(colmap.plan_cameras(tmp_path, names, sizes, "per-image")[0]) == 3
    assert len(colmap.plan_cameras(tmp_path, names, sizes, "single")[0]) == 1
    cams, _ = colmap.plan_cameras(tmp_path, names, sizes, "single", intrinsics="50,51,32,24")
    assert cams[0].model == pycolmap.CameraModelId.PINHOLE and list(cams[0].params) == [50, 51, 32, 24]
    with pytest.raises(ConfigError, match="different sizes"):
        colmap.plan_cameras(tmp_path, names, {**sizes, "b/3.jpg": (48, 64)}, "single")
    with pytest.raises(ConfigError, match="numbers"):
        colmap.parse_intrinsics("1,2,3", "SIMPLE_RADIAL")


def test_option_dicts_are_checked():
    ok = colmap.check_options({"mapper": {"init_min_num_inliers": 50}}, pycolmap.IncrementalPipelineOptions,
                              "mapper")
    assert pycolmap.IncrementalPipelineOptions(ok).mapper.init_min_num_inliers == 50
    with pytest.raises(ConfigError, match="filter_min_tri_angl"):
        colmap.check_options({"mapper": {"filter_min_tri_angl": 1}}, pycolmap.IncrementalPipelineOptions, "m")
    with pytest.raises(ConfigError, match="Unknown COLMAP option"):
        colmap.check_options({"filter_min_tri_angle": 1.5}, pycolmap.IncrementalPipelineOptions, "m")
    with pytest.raises(ConfigError, match="SIGABRT"):
        colmap.check_options({"type": "ALIKED_N16ROT"}, pycolmap.FeatureExtractionOptions, "extraction")


@pytest.mark.slow
def test_global_mapping_registers_all(tracks):
    out, *_ = tracks
    with colmap.colmap_logging(out / "colmap.log."):
        model, summary = colmap.run_mapping(out / "database.db", SAMPLE / "images", out / "global", "global")
    assert model is not None and model.num_reg_images() == 8 and model.num_points3D() > 500
    from l2m_sfm.evaluate import evaluate

    result = evaluate(model, pycolmap.Reconstruction(str(SAMPLE / "gt")))
    assert result["median_rotation_error_deg"] < 0.5


def test_bad_points_are_removed_after_mapping():
    rec = pycolmap.Reconstruction(str(SAMPLE / "gt"))
    a, b = sorted(rec.reg_image_ids())[:2]
    X = np.zeros(3)
    for image_id, shift in ((a, 0.0), (b, 40.0)):  # point 2 is observed 40 px off in image b
        im = rec.images[image_id]
        im.points2D = [pycolmap.Point2D(im.project_point(X)), pycolmap.Point2D(im.project_point(X) + [shift, 0])]
    for k in range(2):
        track = pycolmap.Track()
        track.add_element(a, k)
        track.add_element(b, k)
        rec.add_point3D(X, track)
    assert colmap.remove_bad_points(rec, max_error=4.0, min_tri_angle=0.0) == 2  # both observations of point 2
    assert rec.num_points3D() == 1 and rec.compute_mean_reprojection_error() < 1e-6


def test_focal_priors_dropped_in_a_copy_verified_again(tracks, tmp_path):
    out, names, ids, _, _ = tracks
    assert colmap.focal_priors(out / "database.db") == {}
    assert colmap.without_focal_priors(out / "database.db", tmp_path / "none.db") == 0
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "none.db.tmp").exists()
    with_prior = tmp_path / "prior.db"
    with_prior.write_bytes((out / "database.db").read_bytes())
    with pycolmap.Database.open(str(with_prior)) as db:
        cam = db.read_all_cameras()[0]
        cam.params = [2000.0, *list(cam.params)[1:]]
        cam.has_prior_focal_length = True
        db.update_camera(cam)
    assert colmap.focal_priors(with_prior) == {cam.camera_id: 2000.0}
    assert colmap.without_focal_priors(with_prior, tmp_path / "noprior.db") == 1
    assert colmap.focal_priors(with_prior) == {cam.camera_id: 2000.0}  # the source is left alone
    with pycolmap.Database.open(str(tmp_path / "noprior.db")) as db:
        (new,) = db.read_all_cameras()
        assert not new.has_prior_focal_length and new.params[0] == pytest.approx(1.2 * 640)
        assert db.num_verified_image_pairs() == 28


def test_verification_is_seeded(tracks, tmp_path):
    """Two verifications of the same matches give the same inliers (COLMAP's default seeds from the clock)."""
    out = tracks[0]
    inliers = []
    for run in range(2):
        db = tmp_path / f"{run}.db"
        db.write_bytes((out / "database.db").read_bytes())
        with pycolmap.Database.open(str(db)) as handle:
            handle.clear_two_view_geometries()
        with colmap.colmap_logging(tmp_path / "log."):
            colmap.verify_matches(db, {"ransac": {"max_error": 0.5, "min_inlier_ratio": 0.05}})
        with pycolmap.Database.open(str(db)) as handle:
            inliers.append([t.inlier_matches for t in handle.read_two_view_geometries()[1]])
    assert len(inliers[0]) == 28
    for a, b in zip(*inliers):
        np.testing.assert_array_equal(a, b)


def test_colmap_stage_runs_alone_with_fixed_intrinsics(tracks, tmp_path, capsys):
    """python -m l2m_sfm.colmap: HDF5 files in, model out; known intrinsics come out unchanged."""
    out, names, *_ = tracks
    args = ["--images", str(SAMPLE / "images"), "--pairs", str(out / "pairs.txt"), "--features",
            str(out / "features.h5"), "--matches", str(out / "matches.h5"), "--output", str(tmp_path / "alone")]
    assert colmap.cli(args + ["--intrinsics", "520,520,320,240"]) == 0
    assert "Registered 8 images" in capsys.readouterr().out
    model = pycolmap.Reconstruction(str(tmp_path / "alone" / "sfm"))
    assert model.num_reg_images() == 8 and (tmp_path / "alone" / "sfm" / "text" / "images.txt").exists()
    assert [list(c.params) for c in model.cameras.values()] == [[520.0, 520.0, 320.0, 240.0]]
    assert colmap.cli(args[:6] + ["--matches", str(tmp_path / "none.h5"), "--output", str(tmp_path / "x")]) == 2
    assert "none.h5 does not exist" in capsys.readouterr().err
    assert colmap.cli(args + ["--intrinsics", "520,520"]) == 2
    assert "--intrinsics has 2 numbers" in capsys.readouterr().err
