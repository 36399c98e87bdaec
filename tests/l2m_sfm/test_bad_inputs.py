"""Table-driven bad-input suite over real photos: whatever a user throws at `reconstruct`, it ends in a result
or in one `error:` line with a non-zero exit status, never a traceback, and no finished work is lost.

Photos: the sample scene's eight views (datasets/samples/toybox, downscaled to 320x240 for speed) and, for the
folder without overlap, one photo of each dev scene under ../shared/data. Odd files are generated into tmp_path.
The table each case is checked against is printed in the README's "Troubleshooting" section.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Callable

import numpy as np
import pycolmap
import pytest
from PIL import Image

from l2m_sfm import reconstruct
from tests.l2m_sfm.test_baselines import DATA

SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "toybox"
REPO = Path(__file__).resolve().parents[2]
FAST = ["--matcher", "sift", "matcher.conf.max_keypoints=1024"]
SIZE = (320, 240)


def run_cli(*args: str) -> tuple[int, str, str]:
    """reconstruct's command line in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = reconstruct.cli([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def assert_one_error_line(code: int, err: str, *expected: str) -> str:
    """Non-zero status, no traceback, exactly one `error:` line containing every `expected` text; returns it."""
    assert code != 0
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err[-3000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def view(i: int) -> Image.Image:
    if not SAMPLE.exists():
        pytest.skip(f"sample scene {SAMPLE} missing")
    return Image.open(SAMPLE / "images" / f"view_{i:02d}.jpg").convert("RGB").resize(SIZE, Image.LANCZOS)


def save(img: Image.Image, path: Path, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)


def plain_views(folder: Path, indices=range(8)) -> Path:
    for i in indices:
        save(view(i), folder / f"view_{i:02d}.jpg", quality=92)
    return folder


# ---------------------------------------------------------------------------------------- one folder, many files
def _exif_rotated(i: int, path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown = stored pixels turned 90 degrees clockwise
    save(view(i).transpose(Image.Transpose.ROTATE_90), path, exif=exif, quality=92)


def _png16(i: int, path: Path) -> None:
    import cv2

    rgb16 = np.asarray(view(i)).astype(np.uint16) * 257
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))


def _truncated(path: Path) -> None:
    buf = io.BytesIO()
    view(0).save(buf, format="JPEG", quality=92)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])


# name -> (how the file is made, expected outcome: "registered" | "unregistered" | "skipped: <reason text>")
FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "IMG 0001.jpg": (lambda p: save(view(0), p, quality=92), "registered"),  # space
    "Été ü/写真 2.jpg": (lambda p: save(view(1), p, quality=92), "registered"),  # non-ASCII + nested + spaces
    "a/b/c/deep.jpg": (lambda p: save(view(2), p, quality=92), "registered"),  # nested three levels
    "gray.jpg": (lambda p: save(view(3).convert("L"), p, quality=92), "registered"),  # grayscale
    "sixteen_bit.png": (lambda p: _png16(4, p), "registered"),  # 16-bit colour PNG
    "cmyk.jpg": (lambda p: save(view(5).convert("CMYK"), p, quality=92), "registered"),  # CMYK JPEG
    "rotated.jpg": (lambda p: _exif_rotated(6, p), "registered"),  # EXIF orientation 6
    "100%.jpg": (lambda p: save(view(7), p, quality=92), "registered"),  # '%' survives the pair-file encoding
    "tiny.png": (lambda p: save(view(0).resize((32, 32)), p), "unregistered"),  # 32x32 pixels
    "truncated.jpg": (_truncated, "skipped: corrupt JPEG"),
    "empty.jpg": (lambda p: p.write_bytes(b""), "skipped: 0 bytes"),
    "notes.txt": (lambda p: p.write_text("not a photo"), "skipped: not an image"),
    "fake.jpg": (lambda p: p.write_text("<html>a web page saved as .jpg</html>"), "skipped: not an image"),
    "IMG_0002.HEIC": (lambda p: p.write_bytes(b"\0\0\0\x18ftypheic" + bytes(64)), "skipped: HEIC photos are not read"),
}


@pytest.fixture(scope="module")
def odd_folder_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd")
    images = root / "images"
    for name, (make, _) in FILES.items():
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        make(images / name)
    (images / ".DS_Store").write_bytes(b"\0" * 10)  # hidden: ignored, not even reported
    out = root / "out"
    code, stdout, err = run_cli("--images", images, "--output", out, *FAST)
    return code, stdout, err, out


@pytest.mark.parametrize("name", list(FILES))
def test_odd_file(odd_folder_run, name):
    code, stdout, err, out = odd_folder_run
    assert code == 0 and "Traceback" not in err, err[-3000:]
    rep = json.loads((out / "report.json").read_text())
    expected = FILES[name][1]
    skipped = {s["name"]: s["reason"] for s in rep["images"]["skipped"]}
    if expected.startswith("skipped: "):
        assert expected.removeprefix("skipped: ") in skipped[name], skipped.get(name)
        assert name not in rep["model"]["registered_names"]
    elif expected == "registered":
        assert name in rep["model"]["registered_names"], rep["model"]["unregistered_names"]
        assert pycolmap.Reconstruction(str(out / "sfm")).find_image_with_name(name) is not None
    else:
        assert name not in skipped and name in rep["model"]["unregistered_names"]


def test_odd_folder_model_is_sound(odd_folder_run):
    code, stdout, err, out = odd_folder_run
    rep = json.loads((out / "report.json").read_text())
    assert rep["images"]["found"] == 9 and ".DS_Store" not in {s["name"] for s in rep["images"]["skipped"]}
    model = pycolmap.Reconstruction(str(out / "sfm"))
    cam = model.cameras[model.find_image_with_name("rotated.jpg").camera_id]
    assert (cam.width, cam.height) == SIZE  # upright size after EXIF, not the stored 240x320
    assert rep["model"]["mean_reprojection_error_px"] < 1.0 and rep["model"]["points3D"] > 300
    # the names are the real ones in the text model too, and the pair file holds them encoded
    assert "Été ü/写真 2.jpg" in (out / "sfm" / "text" / "images.txt").read_text(encoding="utf-8")
    assert "IMG%200001.jpg" in (out / "pairs.txt").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------- folder-level cases
def test_duplicate_photo_under_two_names(tmp_path):
    images = plain_views(tmp_path / "images", range(5))
    shutil.copy(images / "view_02.jpg", images / "view_02 copy.jpg")
    code, _, err = run_cli("--images", images, "--output", tmp_path / "out", *FAST)
    assert code == 0 and "Traceback" not in err, err[-3000:]
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["images"]["found"] == 6
    assert {f"view_{i:02d}.jpg" for i in range(5)} <= set(rep["model"]["registered_names"])


def test_only_tiny_images(tmp_path):
    images = tmp_path / "images"
    for i in range(3):
        save(view(i).resize((32, 32)), images / f"t{i}.png")
    code, _, err = run_cli("--images", images, "--output", tmp_path / "out", *FAST)
    assert_one_error_line(code, err, "No model could be reconstructed", "report.json")
    assert (tmp_path / "out" / "report.json").exists()


def _one_photo_per_scene(folder: Path) -> Path:
    scenes = [DATA / "strecha" / "fountain-P11" / "images", DATA / "strecha" / "Herz-Jesus-P8" / "images",
              DATA / "sfm_smoke" / "sacre_coeur" / "images", DATA / "sfm_smoke" / "opensfm_berlin" / "images"]
    if not all(s.is_dir() for s in scenes):
        pytest.skip(f"dev scenes not found under {DATA} (set L2M_SHARED_DATA)")
    save(view(0), folder / "toybox.jpg", quality=92)
    for k, scene in enumerate(scenes):
        photo = sorted(p for p in scene.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[0]
        img = Image.open(photo).convert("RGB")
        img.thumbnail((640, 640))
        save(img, folder / f"scene{k}.jpg", quality=92)
    return folder


def test_no_two_photos_overlap(tmp_path):
    images = _one_photo_per_scene(tmp_path / "images")
    code, _, err = run_cli("--images", images, "--output", tmp_path / "out", "--pairs", "exhaustive", *FAST)
    line = assert_one_error_line(code, err, "No model could be reconstructed", "check that the photos overlap")
    assert "--pairs exhaustive" not in line  # exhaustive was tried: not advised again
    assert "Tried: exhaustive pairs; matcher sift" in line
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["model"] is None and rep["images"]["found"] == 5
    assert (tmp_path / "out" / "matches.h5").exists()  # the matching work is kept for the next attempt


def _read_only_folder(tmp_path: Path) -> Path:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root ignores permissions: use a folder the kernel refuses to write into
        ro = Path("/sys/fs")
        if not ro.is_dir() or os.access(ro / "x", os.F_OK):
            pytest.skip("no read-only folder available to root here")
    return ro


@pytest.mark.parametrize("inside", [False, True], ids=["the-folder", "a-new-subfolder"])
def test_read_only_output_folder(tmp_path, inside):
    images = plain_views(tmp_path / "images", range(3))
    ro = _read_only_folder(tmp_path)
    out = ro / "out" if inside else ro
    code, _, err = run_cli("--images", images, "--output", out, *FAST)
    assert_one_error_line(code, err, "cannot write to the output folder", "choose a writable --output")
    assert not (ro / ".lock").exists() and not (ro / "out").exists()


def test_output_that_is_a_file(tmp_path):
    images = plain_views(tmp_path / "images", range(2))
    (tmp_path / "out.txt").write_text("notes")
    code, _, err = run_cli("--images", images, "--output", tmp_path / "out.txt", *FAST)
    assert_one_error_line(code, err, "is a file, not a folder")
    assert (tmp_path / "out.txt").read_text() == "notes"


def test_failed_run_leaves_nothing_and_the_corrected_command_runs(tmp_path):
    images = plain_views(tmp_path / "images", range(4))
    out = tmp_path / "out"
    for bad in (["--intrinsics", "300,300,160"], ["--pairs", "file:missing.txt"], ["--camera-model", "FISHEYE9"]):
        code, _, err = run_cli("--images", images, "--output", out, *FAST, *bad)
        assert_one_error_line(code, err)
        assert not out.exists(), f"{bad} left {sorted(p.name for p in out.iterdir())}"
    code, _, err = run_cli("--images", images, "--output", out, *FAST, "--intrinsics", "384,384,160,120")
    assert code == 0, err[-3000:]


def test_second_reconstruct_on_the_same_output_refuses_while_the_first_runs(tmp_path):
    images = plain_views(tmp_path / "images")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    first = subprocess.Popen([sys.executable, "-m", "l2m_sfm.reconstruct", "--images", str(images), "--output",
                              str(out), *FAST], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None:
            if (out / ".lock").exists() and (out / ".lock").read_text().strip() == str(first.pid):
                break
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second could start"
        code, _, err = run_cli("--images", images, "--output", out, *FAST)
        still_running = first.poll() is None
    finally:
        stdout, stderr = first.communicate(timeout=600)
    assert still_running
    assert_one_error_line(code, err, f"in use by another reconstruct (pid {first.pid})", "choose another --output")
    assert first.returncode == 0, stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    assert rep["model"]["registered"] == 8  # the first run's work is whole
    # and once it is done, the same command reuses everything
    code, _, err = run_cli("--images", images, "--output", out, *FAST)
    assert code == 0, err[-3000:]
    rep = json.loads((out / "report.json").read_text())
    assert rep["matching"]["pairs_computed"] == 0 and rep.get("mapping_reused") is True


@pytest.mark.slow
def test_50_megapixel_photo_with_bounded_peak_memory(tmp_path):
    """One 8660x5776 (50.0 MP) photo among 320x240 views. Peak resident memory of the whole process is
    printed and bounded (measured: see the README)."""
    images = plain_views(tmp_path / "images", range(5))
    big = view(2).resize((8660, 5776), Image.BICUBIC)
    assert big.size[0] * big.size[1] >= 50_000_000
    big.save(images / "view_02.jpg", quality=90)
    del big
    out = tmp_path / "out"
    # VmHWM of this process's own memory map: getrusage's ru_maxrss keeps the forking parent's peak across exec
    # on Linux (a pytest process that had loaded models reported 6.4 GB here)
    probe = ("import atexit, re, runpy, sys\n"
             "hwm = lambda: int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024\n"
             "atexit.register(lambda: print('PEAK_RSS_MB', hwm(), file=sys.stderr))\n"
             f"sys.argv = ['reconstruct', '--images', {str(images)!r}, '--output', {str(out)!r}, {', '.join(map(repr, FAST))}]\n"
             "runpy.run_module('l2m_sfm.reconstruct', run_name='__main__')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    peak = int(proc.stderr.split("PEAK_RSS_MB")[1].split()[0])
    print(f"peak resident memory with a 50 MP photo: {peak} MB")
    assert peak < PEAK_MB_50MP, peak
    rep = json.loads((out / "report.json").read_text())
    assert "view_02.jpg" in rep["model"]["registered_names"]
    cam = pycolmap.Reconstruction(str(out / "sfm")).cameras
    assert any((c.width, c.height) == (8660, 5776) for c in cam.values())


PEAK_MB_50MP = 1600  # measured 1124 MB (pycolmap 4.2.1, torch 2.14 CPU, SIFT resize_max 1024)


def test_output_folder_inside_the_image_folder_is_not_read_as_photos(tmp_path):
    """--output photos/out: the second run must not take OUT/matches/*.jpg for photos of the scene."""
    images = plain_views(tmp_path / "images", range(4))
    for _ in range(2):
        code, _, err = run_cli("--images", images, "--output", images / "out", *FAST)
        assert code == 0, err[-3000:]
    rep = json.loads((images / "out" / "report.json").read_text())
    assert list((images / "out" / "matches").glob("*.jpg"))
    assert rep["images"]["found"] == 4 and rep["images"]["skipped"] == []
    assert rep["matching"]["pairs_computed"] == 0


def test_a_line_break_in_a_name_is_skipped_with_the_reason(tmp_path):
    images = plain_views(tmp_path / "images", range(3))
    shutil.copy(images / "view_00.jpg", images / "two\nlines.jpg")
    code, _, err = run_cli("--images", images, "--output", tmp_path / "out", *FAST)
    assert code == 0, err[-3000:]
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["images"]["skipped"][0]["name"] == "two\nlines.jpg"
    assert "line break" in rep["images"]["skipped"][0]["reason"] and rep["model"]["registered"] == 3
