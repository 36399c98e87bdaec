"""The data-generation CLI: folder layout, bad inputs reported, identical read-back, resume."""
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from l2m.data.synthetic import FolderPairs, SyntheticPairs

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "l2m" / "data"))
from data_scenes import textured_image  # noqa: E402
from script_loader import load_script  # noqa: E402


def load_cli():
    return load_script("pipelines/generate_data.py")


def make_inputs(tmp: Path) -> Path:
    images = tmp / "images"
    (images / "sub").mkdir(parents=True)
    cv2.imwrite(str(images / "a.png"), textured_image(70, 90, 1))
    cv2.imwrite(str(images / "sub" / "b.jpg"), textured_image(90, 70, 2))
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (images / "notes.txt").write_text("not an image")
    return images


def test_generated_folder_reads_back_identically(tmp_path, capsys):
    gen = load_cli()
    images = make_inputs(tmp_path)
    out = gen.cli(["--images", str(images), "--output", str(tmp_path / "out"), "--views-per-image", "2",
                   "--size", "64", "--relight", "--sky-mask", "--seed", "3"])
    printed = capsys.readouterr().out
    names = (out / "samples.txt").read_text().split()
    assert names == ["a__v0", "a__v1", "sub__b__v0", "sub__b__v1"]
    skipped = (out / "skipped.txt").read_text()
    assert "broken.jpg" in skipped and "broken.jpg" in printed
    assert (out / "conf.json").is_file() and not list(out.glob(".*tmp*"))
    folder = FolderPairs(out)
    fly = SyntheticPairs(images, conf={"size": 64, "relight": {"enabled": True}, "sky": {"enabled": True}},
                         views_per_image=2, seed=3)
    assert len(folder) == len(fly) == 4
    for i in range(4):
        a, b = folder[i], fly[i]
        assert a["name"] == b["name"]
        for k, v in a.items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, b[k]), (i, k)
    # resume: a rerun writes nothing new and keeps the same list
    mtime = (out / "a__v0" / "meta.json").stat().st_mtime_ns
    gen.cli(["--images", str(images), "--output", str(out), "--views-per-image", "2", "--size", "64"])
    assert (out / "a__v0" / "meta.json").stat().st_mtime_ns == mtime
    assert (out / "samples.txt").read_text().split() == names


def test_disparity_inputs_and_missing_ones_are_reported(tmp_path):
    gen = load_cli()
    images = make_inputs(tmp_path)
    disp = tmp_path / "disp"
    disp.mkdir()
    d = np.tile(np.linspace(0, 1, 90)[None], (70, 1)).astype(np.float32)
    np.save(disp / "a.npy", d)
    out = gen.main({"size": 48}, images, tmp_path / "out", disparity=disp, progress=False)
    assert (out / "samples.txt").read_text().split() == ["a__v0"]
    assert "sub/b.jpg\tno disparity file" in (out / "skipped.txt").read_text()
    pair = FolderPairs(out, resolution=(32, 32))[0]
    assert pair["image_A"].shape == (3, 32, 32) and pair["depth_A"].shape == (32, 32)
    assert "pseudo_depth" not in (out / "a__v0" / "meta.json").read_text()  # the given disparity was used


def test_configuration_errors_are_one_line_with_a_failing_status(tmp_path, capsys):
    gen = load_cli()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    cases = [
        (["--images", str(empty)], "holds no readable photos; 1 files skipped, e.g. notes.txt"),
        (["--images", str(tmp_path / "missing")], "does not exist"),
        (["--images", str(empty), "pose.nope=1"], "Unknown key data.pose.nope"),
        (["--images", str(make_inputs(tmp_path)), "--sky-mask", str(tmp_path / "sky.onnx")], "Sky model"),
    ]
    for args, message in cases:
        assert gen.run([*args, "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "out").exists()  # nothing written
