"""A user's path with the official L2M++ files: put them in $L2M_HOME/checkpoints (or pass --weights), then
reconstruct, the hloc entry and the scene benchmark run; missing, truncated and wrong files stop with one line.

The files are random weights written in the official formats (`l2m.models.random_checkpoints`: 446 MB matcher +
1.2 GB ViT-L), once per session; the runs use 3 photos of the sample scene and small resolutions, because
full-size L2M++ costs minutes per pair on a CPU. Random weights give meaningless matches: these tests check
the plumbing (files found, formats loaded, every stage runs), not accuracy.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
import torch

from l2m.models.random_checkpoints import write_random_checkpoints

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "datasets" / "samples" / "toybox"
SMALL = ["matcher.conf.coarse_res=112", "matcher.conf.upsample_res=128", "matcher.conf.num_samples=1000"]


@pytest.fixture(scope="session")
def official_files(tmp_path_factory) -> dict[str, Path]:
    """Random l2m++ files in the three official formats; the ViT file is shared."""
    root = tmp_path_factory.mktemp("official")
    files = write_random_checkpoints("l2m++", root / "flat", "flat")
    out = {"flat": files["weights"], "vit": files["coarse_weights"]}
    state = torch.load(files["weights"], weights_only=True)
    for fmt, name, obj in (("model", "l2m++_560x560.pth", {"model": state}),
                           ("v2", "l2m++_560x560v2.pth.ckpt", {"state_dict": {f"model.{k}": v for k, v in state.items()}})):
        (root / fmt).mkdir()
        torch.save(obj, root / fmt / name)
        out[fmt] = root / fmt / name
    return out


@pytest.fixture()
def l2m_home(tmp_path, monkeypatch) -> Path:
    """An empty $L2M_HOME; tests link the files they need into its checkpoints/ folder."""
    home = tmp_path / "l2m_home"
    (home / "checkpoints").mkdir(parents=True)
    monkeypatch.setenv("L2M_HOME", str(home))
    return home / "checkpoints"


@pytest.fixture()
def three_photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("view_00.jpg", "view_01.jpg", "view_02.jpg"):
        shutil.copy(SAMPLE / "images" / name, folder / name)
    return folder


def _link(src: Path, folder: Path) -> Path:
    (folder / src.name).symlink_to(src)
    return folder / src.name


def _reconstruct(argv: list[str]) -> int:
    from l2m_sfm.reconstruct import cli

    return cli(argv)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["v2", "model"])
def test_reconstruct_finds_official_files_in_l2m_home(official_files, l2m_home, three_photos, tmp_path, fmt):
    """No --weights: the matcher file (v1 name, or the v2 trainer checkpoint alone) and the ViT file are found
    in $L2M_HOME/checkpoints; every pair is matched and written (mapping may fail on random matches)."""
    _link(official_files[fmt], l2m_home)
    _link(official_files["vit"], l2m_home)
    out = tmp_path / "out"
    code = _reconstruct(["--images", str(three_photos), "--output", str(out), "--matcher", "l2m++", *SMALL])
    assert code in (0, 2)  # 2: random matches may not map; the matching stages must have run
    with h5py.File(out / "matches.h5", "r") as f:
        pairs = sum(len(f[a]) for a in f)
    assert pairs == 3
    config = json.loads((out / "config.json").read_text())
    assert config["matcher"]["name"] == "l2m++"


@pytest.mark.slow
def test_reconstruct_with_weights_flags(official_files, l2m_home, three_photos, tmp_path):
    """--weights and --coarse-weights with an empty $L2M_HOME: both files are taken from the given paths."""
    out = tmp_path / "out"
    code = _reconstruct(["--images", str(three_photos), "--output", str(out), "--matcher", "l2m++",
                         "--weights", str(official_files["flat"]), "--coarse-weights", str(official_files["vit"]),
                         *SMALL])
    assert code in (0, 2)
    with h5py.File(out / "features.h5", "r") as f:
        assert sorted(f) == ["view_00.jpg", "view_01.jpg", "view_02.jpg"]
        assert all(len(f[n]["keypoints"]) > 100 for n in f)


def test_missing_file_is_one_line_naming_file_and_folder(l2m_home, three_photos, tmp_path, capsys):
    code = _reconstruct(["--images", str(three_photos), "--output", str(tmp_path / "out"), "--matcher", "l2m++"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "dinov2l_distilled.pth" in err and str(l2m_home) in err and "Traceback" not in err


def test_truncated_file_is_one_line_naming_file_and_folder(official_files, l2m_home, three_photos, tmp_path,
                                                          capsys):
    _link(official_files["vit"], l2m_home)
    cut = l2m_home / "l2m++_560x560.pth"
    with open(official_files["flat"], "rb") as src:
        cut.write_bytes(src.read(1 << 20))  # the first MB of a 446 MB file: an interrupted copy
    code = _reconstruct(["--images", str(three_photos), "--output", str(tmp_path / "out"), "--matcher", "l2m++"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "'l2m++_560x560.pth'" in err and str(l2m_home) in err and "copied again" in err


def test_wrong_file_names_it_and_the_differing_keys(official_files, l2m_home, three_photos, tmp_path, capsys):
    """The ViT file given as the matcher: the first line names the file and the counts, then the keys."""
    _link(official_files["vit"], l2m_home)
    code = _reconstruct(["--images", str(three_photos), "--output", str(tmp_path / "out"), "--matcher", "l2m++",
                         "--weights", str(official_files["vit"])])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert str(official_files["vit"]) in err[0] and "603 missing" in err[0]
    assert any(line.strip().startswith("decoder.conv_refiner.") for line in err[1:])  # listed missing keys
    assert any("blocks.0.attn.qkv.weight" in line for line in err[1:])


@pytest.mark.slow
def test_hloc_match_dense_runs_with_the_official_files(official_files, l2m_home, tmp_path, vendored_hloc):
    """The real hloc (vendored, unchanged) matches a pair with confs["l2m++"] and the files from $L2M_HOME."""
    from hloc import match_dense

    from l2m_sfm import hloc as plugin

    _link(official_files["flat"], l2m_home)
    _link(official_files["vit"], l2m_home)
    plugin.register()
    conf = {**plugin.confs["l2m++"], "preprocessing": {**plugin.confs["l2m++"]["preprocessing"], "resize_max": 320}}
    conf["model"] = {**conf["model"], "coarse_res": 112, "upsample_res": 128, "num_samples": 1000}
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("view_00.jpg view_01.jpg\n")
    features, matches = match_dense.main(conf, pairs, SAMPLE / "images", export_dir=tmp_path)
    with h5py.File(features, "r") as f:
        assert len(f["view_00.jpg"]["keypoints"]) > 50
    assert Path(matches).is_file()


@pytest.mark.slow
def test_scene_benchmark_runs_with_the_official_files(official_files, l2m_home, tmp_path):
    """pipelines/scene_benchmark.py on the sample scene (3 pairs) with l2m++ found in $L2M_HOME."""
    from script_loader import load_script

    _link(official_files["flat"], l2m_home)
    _link(official_files["vit"], l2m_home)
    sb = load_script("pipelines/scene_benchmark.py")
    rows, runs = sb.main(["--scenes", str(SAMPLE), "--matchers", "l2m++", "--output", str(tmp_path / "bench"),
                          "--matcher-conf", "l2m++.coarse_res=112", "l2m++.upsample_res=128",
                          "l2m++.num_samples=1000", "--limit", "3", "--no-plots"])
    assert len(runs["l2m++"]) == 3 and rows[0]["matcher"] == "l2m++"
