"""The training recipes end to end on a tiny photo folder: run, stop, resume, export loadable weights."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _photos(folder: Path, n: int = 4) -> Path:
    import cv2
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"img{i}.jpg"), cv2.resize(small, (96, 72), interpolation=cv2.INTER_CUBIC))
    return folder


def _run(stage: int, out: Path, images: Path, *extra: str) -> None:
    cmd = [sys.executable, str(ROOT / "pipelines" / f"train_stage{stage}.py"), "--preset", f"stage{stage}_tiny_cpu",
           "--output", str(out), "--images", str(images), "train.steps=4", "train.batch_size=2",
           "train.num_workers=0", "train.val_size=2", "train.val_every=100", "train.log_every=1",
           "train.checkpoint_every=100", "train.tensorboard=False", "task.resolution=[64, 64]",
           "task.data.engine.size=64", "task.data.val_images=1", "task.data.views_per_image=2", *extra]
    subprocess.run(cmd, check=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2])
def test_recipe_runs_stops_resumes_and_exports(tmp_path, stage):
    images = _photos(tmp_path / "photos")
    out = tmp_path / "run"
    _run(stage, out, images, "train.stop_at_step=2")
    assert (out / "checkpoint_00000002.pt").is_file() and not (out / ("encoder.pt" if stage == 1 else "matcher.pt")).exists()
    _run(stage, out, images, "--resume")
    recs = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if r["split"] == "train"] == [1, 2, 3, 4]
    assert {r["step"] for r in recs if r["split"] == "val"} == {0, 2, 4}
    conf = json.loads((out / "config.json").read_text())
    assert conf["train"]["batch_size"] == 2 and conf["task"]["resolution"] == [64, 64]
    if stage == 2:
        from l2m.models.zoo import build_model
        m = build_model("l2m-tiny", weights=out / "matcher.pt")  # strict load of the exported weights
        ck = torch.load(out / "checkpoint_00000004.pt", weights_only=True)["model"]
        assert torch.equal(m.state_dict()["decoder.proj.16.0.weight"], ck["matcher.decoder.proj.16.0.weight"])
        # export an earlier checkpoint (checkpoint selection), and a clear error for one that is not kept
        _run(stage, out, images, "--export-only", "--checkpoint", "2")
        early = torch.load(out / "checkpoint_00000002.pt", weights_only=True)["model"]
        m = build_model("l2m-tiny", weights=out / "matcher.pt")
        assert torch.equal(m.state_dict()["decoder.proj.16.0.weight"], early["matcher.decoder.proj.16.0.weight"])
        assert not torch.equal(early["matcher.decoder.proj.16.0.weight"], ck["matcher.decoder.proj.16.0.weight"])
        with pytest.raises(subprocess.CalledProcessError):
            _run(stage, out, images, "--export-only", "--checkpoint", "3")
    else:  # starting again in a used run folder without --resume is refused and changes nothing
        log = (out / "metrics.jsonl").read_text()
        with pytest.raises(subprocess.CalledProcessError):
            _run(stage, out, images)
        assert (out / "metrics.jsonl").read_text() == log
        from l2m.models.cnn import XFeatPyramid
        from l2m.models.checkpoint import load_into
        pyr = XFeatPyramid()
        load_into(pyr, torch.load(out / "encoder.pt", weights_only=True), strict=True)


def test_every_preset_resolves_and_the_finetune_preset_changes_only_its_keys():
    from l2m.train.cli import CONFIG_DIR, load_preset

    presets = {p.stem: load_preset(p.stem) for p in CONFIG_DIR.glob("*.json")}
    assert all(set(c) == {"train", "task"} for c in presets.values())
    base, ft = presets["stage2_tiny_cpu"], presets["stage2_tiny_cpu_finetune"]
    assert ft["train"] == {**base["train"], "steps": 2400, "lr_milestones": [0.8]}
    assert ft["task"] == {**base["task"], "weights": None, "pretrained_backbone": False,
                          "lr_decoder": 2e-4, "lr_encoder": 2e-5}
    sfm = presets["stage2_tiny_cpu_sfm"]  # a preset on a preset on a preset: nested dicts merge key by key
    assert sfm["train"] == {**ft["train"], "steps": 2000}
    assert sfm["task"]["data"]["engine"] == base["task"]["data"]["engine"]
    assert sfm["task"]["data"]["sfm_fraction"] == 0.5 and "sfm" not in sfm["task"]["data"]  # --real-pairs
    real = presets["stage2_tiny_cpu_real"]  # held-out model selection on top of the real-pair recipe
    assert real["train"] == {**sfm["train"], "checkpoint_every": 200, "val_every": 200, "keep_checkpoints": 10}
    assert real["task"]["data"] == {**sfm["task"]["data"], "sfm_fraction": 0.6}
    assert real["task"]["real_val"]["scene"].endswith("val/sacre_coeur") and real["task"]["real_val"]["max_pairs"] == 24
    big = presets["stage2_tiny_cpu_real_384"]  # the same recipe at 384 px crops: only size and steps change
    assert big["train"] == {**real["train"], "steps": 1200}
    assert big["task"]["resolution"] == [384, 384] and big["task"]["data"]["engine"]["size"] == 384
    assert {k: v for k, v in big["task"].items() if k not in ("resolution", "data")} == \
        {k: v for k, v in real["task"].items() if k not in ("resolution", "data")}
    assert {**big["task"]["data"], "engine": real["task"]["data"]["engine"]} == real["task"]["data"]
    # and every preset is valid for its stage: its keys are known to the task and loop defaults (strict)
    from l2m.config import merge_conf
    from l2m.train.loop import default_conf as loop_conf
    from l2m.train.stage1 import task_default_conf as s1
    from l2m.train.stage2 import default_conf as s2
    for name, conf in presets.items():
        merge_conf(s1 if name.startswith("stage1") else s2, conf["task"], f"{name}.task")
        merge_conf(loop_conf, conf["train"], f"{name}.train")
        if name.startswith("stage2"):
            from l2m.train.datasets import default_conf as data_conf
            merge_conf(data_conf, conf["task"]["data"], f"{name}.task.data")


@pytest.mark.slow
def test_real_pair_recipe_trains_on_sparse_correspondences(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "l2m" / "data"))
    from data_scenes import write_colmap_model

    images, model = write_colmap_model(tmp_path / "scene", {(1, 2): 80, (2, 3): 80})
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps([{"images": str(images), "model": str(model)}]))
    photos, out = _photos(tmp_path / "photos"), tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "pipelines" / "train_stage2.py"), "--preset", "stage2_tiny_cpu_sfm",
           "--output", str(out), "--images", str(photos), "task.weights=random", "task.pretrained_backbone=False",
           "train.steps=3", "train.batch_size=4", "train.num_workers=0", "train.val_size=1", "train.val_every=100",
           "train.log_every=1", "train.tensorboard=False", "task.resolution=[64, 64]", "task.data.engine.size=64",
           "task.data.val_images=1", "task.data.views_per_image=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    missing = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert missing.returncode != 0 and "--real-pairs" in missing.stderr
    subprocess.run([*cmd, "--real-pairs", str(sources)], check=True, timeout=600, env=env, cwd=ROOT)
    recs = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["split"] == "train"]
    assert len(train) == 3 and all(np.isfinite(r["total"]) for r in train)
    # 3 photos x 2 views synthetic + 2 real pairs x 3 repeats; the seeded shuffle puts real pairs in 2+ batches
    assert sum("sparse_regression_1" in r for r in train) >= 2
    assert json.loads((out / "config.json").read_text())["task"]["data"]["sfm"][0]["model"] == str(model)


@pytest.mark.parametrize("args, message", [
    (["train.stepz=3"], "Unknown key train.stepz"),
    (["--preset", "nope"], "Training preset 'nope' not found"),
    (["foo=1"], "Overrides must start with train. or task."),
    (["--real-pairs", "/nonexistent/sources.json"], "--real-pairs file /nonexistent/sources.json does not exist"),
])
def test_configuration_errors_are_one_line_with_status_2(tmp_path, capsys, args, message):
    from l2m.train.cli import run

    assert run(2, ["--output", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_a_preset_that_is_not_json_is_one_line(tmp_path, capsys):
    from l2m.train.cli import run

    bad = tmp_path / "broken.json"
    bad.write_text("{'train': ")
    assert run(1, ["--output", str(tmp_path / "run"), "--preset", str(bad)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
