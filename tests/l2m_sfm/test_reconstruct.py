"""End-to-end reconstruct: dense path with exact matches, resume, bad files, failure diagnostics."""
import json
import shutil
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from PIL import Image

from l2m_sfm import reconstruct, sample_scene
from l2m_sfm.evaluate import evaluate
from l2m.images import read_image

SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "toybox"
SMALL = {"num_views": 7, "width": 320, "height": 240, "focal": 260.0, "supersample": 2}
FAST_SIFT = {"name": "sift", "conf": {"max_keypoints": 2048}}


@pytest.fixture(scope="module")
def small_scene(tmp_path_factory):
    return sample_scene.main(SMALL, tmp_path_factory.mktemp("small"))


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_dense_path_with_gt_matcher_is_exact(tmp_path):
    pytest.importorskip("l2m_sfm.match_dense")
    if not SAMPLE.exists():
        pytest.skip(f"sample scene {SAMPLE} missing")
    # the 'accurate' quantisation (1-px grid): with 'default' (2-px grid) exact matches give ~0.2 deg
    conf = {"matcher": {"name": "gt", "conf": {"scene": str(SAMPLE), "step": 12}},
            "matching": {"preset": "accurate"}}
    sfm = reconstruct.main(conf, SAMPLE / "images", tmp_path / "out")
    rep = _report(tmp_path / "out")
    assert rep["matching"]["dense"] is True
    assert rep["model"]["registered"] == 8
    assert [m["attempt"] for m in rep["models"]] == [0]  # complete at the first attempt: no retry
    result = evaluate(pycolmap.Reconstruction(str(sfm)), pycolmap.Reconstruction(str(SAMPLE / "gt")))
    assert result["num_registered"] == 8
    assert result["median_rotation_error_deg"] < 0.1
    assert result["auc"]["@5"] > 0.98
    assert rep["model"]["mean_reprojection_error_px"] < 0.5
    for f in ("pairs.txt", "features.h5", "matches.h5", "database.db", "config.json", "sfm/text/images.txt"):
        assert (tmp_path / "out" / f).exists(), f
    assert list((tmp_path / "out" / "matches").glob("*.jpg"))


@pytest.mark.slow
def test_resume_reuses_all_pairs(small_scene, tmp_path):
    out = tmp_path / "out"
    conf = {"matcher": FAST_SIFT}
    reconstruct.main(conf, small_scene / "images", out)
    first = _report(out)
    assert first["matching"]["pairs_computed"] == 21 and first["model"]["registered"] == 7
    reconstruct.main(conf, small_scene / "images", out)
    second = _report(out)
    assert second["matching"]["pairs_reused"] == 21 and second["matching"]["pairs_computed"] == 0
    assert second["database"]["rebuilt"] is False and second.get("mapping_reused") is True
    assert second["model"]["registered"] == 7
    # a half-written database is never trusted: it only exists under a temporary name
    (out / "database.db").unlink()
    reconstruct.main(conf, small_scene / "images", out)
    assert _report(out)["database"]["rebuilt"] is True
    with pytest.raises(reconstruct.ConfigError, match="different matcher"):
        reconstruct.main({"matcher": {"name": "disk+lightglue"}}, small_scene / "images", out)


def test_retrained_weights_under_the_same_name_are_a_different_matcher(tmp_path):
    import torch

    from l2m.models.zoo import build_model, save_matcher_weights

    torch.set_num_threads(1)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3)).astype(np.uint8)).save(images / f"{i}.png")
    model = build_model("l2m-tiny", weights="random", pretrained_backbone=False)
    weights = save_matcher_weights(model, tmp_path / "w" / "l2m_tiny.pt")
    conf = {"matcher": {"name": "l2m-tiny", "conf": {"weights": str(weights), "coarse_res": 64, "upsample_res": 0,
                                                     "num_samples": 100}}, "num_match_images": 0}
    out = tmp_path / "out"
    for _ in range(2):  # noise images reconstruct nothing; the second run reuses the matches
        with pytest.raises(reconstruct.ReconstructionError):
            reconstruct.main(conf, images, out)
    assert _report(out)["matching"]["pairs_reused"] == 1
    stored = json.loads((out / "config.json").read_text())["matcher"]
    assert stored["identity"]["weights"]["name"] == "l2m_tiny.pt" and "identity" not in stored["conf"]
    with torch.no_grad():
        next(model.decoder.parameters()).add_(1.0)
    save_matcher_weights(model, weights)
    with pytest.raises(reconstruct.ConfigError, match="different matcher"):
        reconstruct.main(conf, images, out)


def test_config_without_identity_counts_as_empty_identity():
    old = {"pairs": "exhaustive", "matcher": {"name": "sift", "conf": {}}, "matching": {}}
    assert reconstruct._same_run(old, {**old, "matcher": {"name": "sift", "conf": {}, "identity": {}}}) == []
    assert reconstruct._same_run(old, {**old, "matcher": {"name": "sift", "conf": {}, "identity": {"w": 1}}}) \
        == ["matcher"]


def _bad_folder(scene: Path, root: Path) -> Path:
    """Good views, broken files, and three views stored unusually (EXIF-rotated, 16-bit PNG, CMYK JPEG)."""
    images = root / "images"
    images.mkdir()
    for i in range(4):
        shutil.copy(scene / "images" / f"view_{i:02d}.jpg", images)
    upright = Image.open(scene / "images" / "view_04.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored pixels rotated 90 degrees clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(images / "view_04.jpg", exif=exif, quality=95)
    rgb16 = np.asarray(Image.open(scene / "images" / "view_05.jpg")).astype(np.uint16) * 257
    import cv2

    cv2.imwrite(str(images / "view_05.png"), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    Image.open(scene / "images" / "view_06.jpg").convert("CMYK").save(images / "view_06.jpg", quality=95)
    data = (scene / "images" / "view_00.jpg").read_bytes()
    (images / "corrupt.jpg").write_bytes(data[: len(data) // 3])
    (images / "empty.jpg").write_bytes(b"")
    (images / "notes.txt").write_text("not an image")
    return images


def test_bad_files_are_reported_and_rotated_photo_registers(small_scene, tmp_path):
    images = _bad_folder(small_scene, tmp_path)
    assert read_image(images / "view_04.jpg").shape == (240, 320, 3)  # upright again after EXIF
    out = tmp_path / "out"
    sfm = reconstruct.main({"matcher": FAST_SIFT}, images, out)
    rep = _report(out)
    skipped = {s["name"]: s["reason"] for s in rep["images"]["skipped"]}
    assert set(skipped) == {"corrupt.jpg", "empty.jpg", "notes.txt"}
    assert all(len(reason) > 5 for reason in skipped.values())
    assert "0 bytes" in skipped["empty.jpg"]
    assert rep["images"]["found"] == 7
    assert {"view_04.jpg", "view_05.png", "view_06.jpg"} <= set(rep["model"]["registered_names"])
    model = pycolmap.Reconstruction(str(sfm))
    rotated = model.find_image_with_name("view_04.jpg")
    cam = model.cameras[rotated.camera_id]
    assert (cam.width, cam.height) == (320, 240)  # EXIF-applied size, not the stored 240x320
    # the rotated photo's pose agrees with the GT of the upright view
    gt = pycolmap.Reconstruction(str(small_scene / "gt"))
    for image in gt.images.values():
        if image.name == "view_05.jpg":
            image.name = "view_05.png"
    result = evaluate(model, gt)
    row = next(r for r in result["per_image"] if r["name"] == "view_04.jpg")
    assert row["registered"] and row["rotation_error_deg"] < 1.0


def test_empty_folder_and_failed_reconstruction(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert reconstruct.cli(["--images", str(tmp_path / "empty"), "--output", str(tmp_path / "o1")]) == 2
    assert "0 readable image" in capsys.readouterr().err
    noise = tmp_path / "noise"
    noise.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (120, 160, 3), np.uint8)).save(noise / f"{i}.png")
    code = reconstruct.cli(["--images", str(noise), "--output", str(tmp_path / "o2"), "--matcher", "sift"])
    assert code == 2
    err = capsys.readouterr().err
    assert "No model could be reconstructed" in err and "report.json" in err
    rep = _report(tmp_path / "o2")
    assert rep["model"] is None and "verified_pairs" in rep["database"]
    assert set(rep["database"]["keypoints_per_image"]) == {"0.png", "1.png", "2.png"}
    assert (tmp_path / "o2" / "matches.h5").exists()  # outputs kept


def test_default_pairs_and_cli_conf():
    assert reconstruct.resolve_conf(None, 30)["pairs"] == "exhaustive"
    assert reconstruct.resolve_conf(None, 31)["pairs"] == "retrieval:20"
    assert reconstruct.resolve_conf(None, 5)["matcher"]["name"] == reconstruct.DEFAULT_MATCHER
    args = reconstruct.parse_args(["--images", "x", "--matcher", "sift", "--intrinsics", "1,2,3,4",
                                   "--mapper", "global", "verification.ransac.max_error=2"])
    conf = reconstruct.resolve_conf(reconstruct.conf_from_args(args), 10)
    assert conf["camera"]["intrinsics"] == "1,2,3,4" and conf["mapper"]["type"] == "global"
    assert conf["verification"] == {"ransac": {"max_error": 2}}
    with pytest.raises(reconstruct.ConfigError):
        reconstruct.resolve_conf({"mapperr": {}}, 10)


def test_principal_point_refinement_after_mapping():
    from l2m_sfm import colmap

    if not SAMPLE.exists():
        pytest.skip("sample scene missing")
    gt = pycolmap.Reconstruction(str(SAMPLE / "gt"))
    assert colmap.refine_principal_points(pycolmap.Reconstruction(gt), min_images=9) is False  # 8 images


def test_global_mapping_fallback_when_incremental_fails(tmp_path, capsys):
    """An incremental mapper that cannot initialise (impossible inlier count) is retried with other seeds
    (mapper.attempts), then falls back to global mapping."""
    if not SAMPLE.exists():
        pytest.skip(f"sample scene {SAMPLE} missing")
    base = {"matcher": {"name": "gt", "conf": {"scene": str(SAMPLE), "step": 12}},
            "matching": {"preset": "accurate"},
            "mapper": {"options": {"mapper": {"init_min_num_inliers": 10**6}, "init_num_trials": 1}}}
    with pytest.raises(reconstruct.ReconstructionError):
        reconstruct.main({**base, "mapper": {**base["mapper"], "fallback": None}}, SAMPLE / "images",
                         tmp_path / "off")
    capsys.readouterr()
    reconstruct.main(base, SAMPLE / "images", tmp_path / "on")
    printed = capsys.readouterr().out
    assert "attempt 2 with random seed 1" in printed and "attempt 3 with random seed 2" in printed
    assert "attempt 4" not in printed and "trying global mapping" in printed
    rep = _report(tmp_path / "on")
    assert rep["model"]["registered"] == 8
    assert {m["mapper"] for m in rep["models"]} == {"global"}


NO_NETWORK = '''import socket
def _refuse(*args, **kwargs):
    raise OSError("network disabled by the l2m-sfm offline test")
socket.socket.connect = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
'''


@pytest.mark.slow
def test_bundled_l2m_tiny_reconstructs_sample_offline(tmp_path):
    """Fresh-install conditions: no network, an empty HOME (no checkpoint cache), the bundled weights only."""
    import os
    import subprocess
    import sys

    if not SAMPLE.exists():
        pytest.skip(f"sample scene {SAMPLE} missing")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_NETWORK)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("L2M_HOME", "TORCH_HOME", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]),
               HF_HUB_OFFLINE="1")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "l2m_sfm.reconstruct", "--images", str(SAMPLE / "images"), "--output", str(out),
           "--matcher", "l2m-tiny"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    weights_like = [p for p in home.rglob("*") if p.suffix in (".pt", ".pth", ".safetensors", ".bin", ".ckpt")]
    assert weights_like == [], f"weights appeared in the user's home (a download?): {weights_like}"

    from l2m.models.checkpoint import BUNDLED_DIR
    from l2m_sfm.l2m_matcher import file_sha1

    identity = json.loads((out / "config.json").read_text())["matcher"]["identity"]
    assert identity["weights"] == {"name": "l2m_tiny.pt", "sha1": file_sha1(BUNDLED_DIR / "l2m_tiny.pt")}
    rep = _report(out)
    assert rep["model"]["registered"] == 8
    result = evaluate(pycolmap.Reconstruction(str(out / "sfm")), pycolmap.Reconstruction(str(SAMPLE / "gt")))
    assert result["num_registered"] == 8
    assert result["median_rotation_error_deg"] < 1.0


def test_mapper_options_seed_each_attempt_and_keep_user_choices():
    conf = reconstruct.resolve_conf(None, 10)["mapper"]
    assert reconstruct._mapper_options(conf, 0) == {"random_seed": 0, "num_threads": 1}
    assert reconstruct._mapper_options(conf, 2) == {"random_seed": 2, "num_threads": 1}
    user = {**conf, "options": {"random_seed": 7, "num_threads": 4, "min_num_matches": 30}}
    assert reconstruct._mapper_options(user, 1) == {"random_seed": 8, "num_threads": 4, "min_num_matches": 30}
    free = {**conf, "seed": None, "deterministic": False}
    assert reconstruct._mapper_options(free, 0) == {} and reconstruct._mapper_options(free, 1) == {"random_seed": 1}


def test_mapping_repeats_exactly_on_real_photos(tmp_path):
    """Same database, same conf -> the same model to the last bit (seeded, one thread). Seen without it:
    on Herz-Jesus-P8 with SIFT, seed 0 on two threads gave 3974, 3974, 3972 points over three runs."""
    from tests.l2m_sfm.test_baselines import DATA
    scene = DATA / "strecha" / "Herz-Jesus-P8"
    if not scene.is_dir():
        pytest.skip(f"strecha data not found under {DATA} (set L2M_SHARED_DATA)")
    out = tmp_path / "hj8"
    reconstruct.main({"matcher": FAST_SIFT}, scene / "images", out)
    conf = reconstruct.resolve_conf({"matcher": FAST_SIFT}, 8)
    runs = [reconstruct._map(conf, out / "database.db", scene / "images", tmp_path / f"map{k}", 8)[0]
            for k in range(2)]
    assert all(r.num_reg_images() == 8 for r in runs)
    assert runs[0].num_points3D() == runs[1].num_points3D() > 1000
    for image_id in runs[0].reg_image_ids():
        a, b = (r.images[image_id].cam_from_world().matrix() for r in runs)
        assert np.array_equal(a, b)


@pytest.mark.slow
def test_wrong_exif_focal_prior_is_dropped_when_mapping_falls_short(tmp_path):
    """opensfm_lund's EXIF says 1035 px, bundle adjustment finds ~700 px: with the prior incremental mapping
    of its first 12 photos finds no good initial pair; verified again without the prior, they register."""
    from tests.l2m_sfm.test_baselines import DATA
    scene = DATA / "sfm_smoke" / "opensfm_lund" / "images"
    if not scene.is_dir():
        pytest.skip(f"sfm_smoke data not found under {DATA} (set L2M_SHARED_DATA)")
    images = tmp_path / "lund12"
    images.mkdir()
    for path in sorted(scene.iterdir())[:12]:
        shutil.copy(path, images / path.name)
    out = tmp_path / "out"
    reconstruct.main({"mapper": {"fallback": None}}, images, out)
    rep = _report(out)
    with_prior = [m["registered"] for m in rep["models"] if m["focal_priors"]]
    without = [m for m in rep["models"] if not m["focal_priors"]]
    assert with_prior and max(with_prior) <= 4
    assert without and rep["model"]["registered"] == max(m["registered"] for m in without) >= 10
    assert any(m["kept"] and 0.5 < min(m["focal_to_prior"].values()) < 0.9 for m in without)
    model = pycolmap.Reconstruction(str(out / "sfm"))
    assert all(not c.has_prior_focal_length for c in model.cameras.values())
    assert (out / "database.noprior.db").exists()


@pytest.mark.parametrize("flags, message", [
    (["--device", "gpu"], "is not a torch device"),
    (["--matcher", "superglue"], "Unknown matcher 'superglue'"),
])
def test_cli_refuses_bad_device_or_matcher_before_writing_anything(tmp_path, capsys, flags, message):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "a.png")
    assert reconstruct.cli(["--images", str(images), "--output", str(tmp_path / "out"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_check_device_names_missing_cuda():
    import torch

    reconstruct.check_device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(reconstruct.ConfigError, match="CUDA is not available"):
            reconstruct.check_device("cuda:0")


def test_auto_mapper_switches_to_global_above_the_documented_size():
    n = reconstruct.GLOBAL_MAPPING_ABOVE
    assert reconstruct.resolve_conf(None, n)["mapper"]["type"] == "incremental"
    assert reconstruct.resolve_conf(None, n + 1)["mapper"]["type"] == "global"
    assert reconstruct.resolve_conf({"mapper": {"type": "incremental"}}, n + 1)["mapper"]["type"] == "incremental"
    assert reconstruct.mapper_choice("global", 3) == {"type": "global", "requested": "global", "reason": "requested"}
    auto = reconstruct.mapper_choice("auto", n + 1)
    assert auto["type"] == "global" and auto["requested"] == "auto" and str(n) in auto["reason"]


@pytest.fixture(scope="module")
def exact_model(tmp_path_factory):
    """The sample scene's GT cameras with points triangulated from exact GT-matcher tracks (PINHOLE 520 px,
    principal point (320, 240))."""
    from l2m_sfm import triangulate
    from l2m_sfm.gt_matcher import GTMatcher
    from l2m_sfm.pairs import pairs_exhaustive, write_pairs

    if not SAMPLE.exists():
        pytest.skip(f"sample scene {SAMPLE} missing")
    out = tmp_path_factory.mktemp("exact")
    pairs = pairs_exhaustive(sorted(p.name for p in (SAMPLE / "images").iterdir()))
    write_pairs(pairs, out / "pairs.txt")
    GTMatcher({"scene": SAMPLE}).write_tracks(out / "features.h5", out / "matches.h5", pairs, step=24)
    return triangulate.main({}, SAMPLE / "gt", out / "features.h5", out / "matches.h5", out / "pairs.txt",
                            out / "run", image_dir=SAMPLE / "images")


def _shifted_principal_point(sfm: Path, dx: float, dy: float) -> pycolmap.Reconstruction:
    model = pycolmap.Reconstruction(str(sfm))
    for cam in model.cameras.values():
        cam.params = cam.params + np.array([0, 0, dx, dy])  # PINHOLE fx, fy, cx, cy
    return model


def test_principal_point_refinement_recovers_a_shifted_principal_point(exact_model):
    """Exact tracks, principal point moved by (+6, -4) px: the final BA brings it back to (320, 240)."""
    from l2m_sfm import colmap

    model = _shifted_principal_point(exact_model, 6.0, -4.0)
    assert colmap.refine_principal_points(model, min_images=5) is True
    cam = next(iter(model.cameras.values()))
    assert abs(cam.principal_point_x - 320) < 0.5 and abs(cam.principal_point_y - 240) < 0.5, cam.params
    assert abs(cam.focal_length_x - 520) < 1.0


def test_principal_point_refinement_is_undone_when_it_moves_too_far(exact_model):
    """The same shift, but a limit of 0.1 % of the image size: the refinement is rejected and cameras, poses and
    points are restored exactly."""
    from l2m_sfm import colmap

    model = _shifted_principal_point(exact_model, 6.0, -4.0)
    before = pycolmap.Reconstruction(model)
    assert colmap.refine_principal_points(model, min_images=5, max_shift=0.001) is False
    for cid, cam in before.cameras.items():
        assert np.array_equal(model.cameras[cid].params, cam.params)
    for iid in before.reg_image_ids():
        assert np.array_equal(model.images[iid].cam_from_world().matrix(), before.images[iid].cam_from_world().matrix())
    for pid, pt in before.points3D.items():
        assert np.array_equal(model.points3D[pid].xyz, pt.xyz)
    # too few images per camera: nothing is touched at all
    assert colmap.refine_principal_points(model, min_images=9) is False


def test_failure_advice_leaves_out_what_was_tried():
    from l2m_sfm.report import failure_message

    base = {"images": {"found": 6}, "database": {"verified_pairs": 0, "matched_pairs": 15,
                                                 "keypoints_per_image": {"a": 900, "b": 1000}},
            "models": [{"mapper": "incremental", "attempt": k, "focal_priors": True} for k in range(3)]}
    tried = {**base, "pairs": {"method": "exhaustive"}, "config": {
        "pairs": "exhaustive", "matcher": {"name": "disk+lightglue"},
        "camera": {"mode": "single", "intrinsics": "500,500,320,240"}}}
    text = failure_message(tried)
    assert "Tried: exhaustive pairs; matcher disk+lightglue; incremental mapping (3 seeds)" in text
    for done in ("--pairs exhaustive", "--camera-mode single", "--intrinsics", "e.g. disk+lightglue"):
        assert done not in text
    assert "check that the photos overlap" in text and "e.g. sift" in text and "--mapper global" in text
    fresh = {**base, "database": {**base["database"], "verified_pairs": 2}, "pairs": {"method": "retrieval:20"},
             "config": {"pairs": "retrieval:20", "matcher": {"name": "sift"}, "camera": {"mode": "auto"}}}
    text = failure_message(fresh)
    assert "--pairs exhaustive" in text and "--camera-mode single" in text and "--intrinsics" in text
    assert "overlap" not in text


def test_intrinsics_are_validated_before_matching_and_held_fixed(small_scene, tmp_path, capsys):
    images, out = small_scene / "images", tmp_path / "out"
    for bad, message in (("260,260,160", "--intrinsics has 3 numbers"), ("0,260,160,120", "must be positive"),
                         ("a,b,c,d", "expected comma-separated numbers")):
        assert reconstruct.cli(["--images", str(images), "--output", str(out), "--intrinsics", bad]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()  # refused before anything was written or matched
    # a focal 4 % off the truth (260 px) stays exactly as given: held fixed, not refined
    assert reconstruct.cli(["--images", str(images), "--output", str(out), "--intrinsics", "250,250,160,120",
                            "--matcher", "sift", "matcher.conf.max_keypoints=2048"]) == 0
    model = pycolmap.Reconstruction(str(out / "sfm"))
    assert model.num_reg_images() == 7
    assert [list(c.params) for c in model.cameras.values()] == [[250.0, 250.0, 160.0, 120.0]]


def test_weights_flag_with_a_sparse_matcher_is_one_clear_line(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    assert reconstruct.cli(["--images", str(images), "--weights", "x.pt"]) == 2
    err = capsys.readouterr().err
    assert "--weights is for L2M matchers" in err and "matcher sift takes none" in err
