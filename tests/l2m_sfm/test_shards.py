"""Sharding over torchrun processes: partition, atomic merge, N=1 vs N=2 equality and resume after kill -9.

The multi-process tests launch real `torchrun` jobs (gloo on the CPU) on a small rendered scene.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pycolmap
import pytest

from l2m_sfm import h5io, sample_scene
from l2m_sfm.shards import Shards, block_start, merge_shards, shard_files

REPO = Path(__file__).resolve().parents[2]
SMALL = {"num_views": 7, "width": 320, "height": 240, "focal": 260.0, "supersample": 2}
SIFT = ["matcher.conf.max_keypoints=1024"]


@pytest.fixture(scope="module")
def small_scene(tmp_path_factory):
    return sample_scene.main(SMALL, tmp_path_factory.mktemp("small"))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _command(nproc: int, images: Path, out: Path, *extra: str) -> list[str]:
    args = ["-m", "l2m_sfm.reconstruct", "--images", str(images), "--output", str(out), *extra]
    if nproc == 1:
        return [sys.executable, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_port", str(29500 + os.getpid() % 1000), *args]


def _run(nproc: int, images: Path, out: Path, *extra: str, threads: int | None = None
         ) -> subprocess.CompletedProcess:
    env = _env() if threads is None else {**_env(), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(_command(nproc, images, out, *extra), env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def h5_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file by its full key."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, v: out.__setitem__(k, np.asarray(v)) if isinstance(v, h5py.Dataset) else None)
    return out


# ---------------------------------------------------------------------------------------------- partition
@pytest.mark.parametrize("n", [0, 1, 5, 28, 29])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_blocks_cover_the_list_in_order_with_sizes_one_apart(n, world):
    items = list(range(n))
    blocks = [Shards(rank, world).split(items) for rank in range(world)]
    assert sum(blocks, []) == items
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1
    assert block_start(n, world, world) == n


def test_single_process_is_a_no_op(tmp_path):
    sh = Shards()
    assert sh.shard_path(tmp_path / "m.h5") == tmp_path / "m.h5"
    assert sh.split([3, 1, 2]) == [3, 1, 2] and sh.device("cuda") == "cuda"
    assert sh.merge(tmp_path / "m.h5") == 0 and not (tmp_path / "m.h5").exists()
    assert Shards(1, 2, 1, 2).device("cuda") == "cuda:1" and Shards(1, 2, 1, 2).device("cpu") == "cpu"


# ------------------------------------------------------------------------------------------------- merge
def test_merge_adds_complete_groups_keeps_existing_drops_half_written(tmp_path):
    main = tmp_path / "matches.h5"
    h5io.write_matches(main, "a.jpg", "b.jpg", np.array([1, -1]), np.array([0.5, 0]))
    s0 = Shards(0, 2).shard_path(main)
    s1 = Shards(1, 2).shard_path(main)
    assert s0.name == "matches.shard-0-of-2.h5"
    h5io.write_matches(s0, "a.jpg", "c.jpg", np.array([0, 1]), np.array([1, 1]))
    h5io.write_matches(s0, "a.jpg", "b.jpg", np.array([0, 0]), np.array([0, 0]))  # a duplicate: main wins
    h5io.write_matches(s1, "dir/x.jpg", "c.jpg", np.array([2]), np.array([1]))
    with h5py.File(s1, "a") as f:  # a writer killed inside a group: marker still False
        g = f.create_group("b.jpg/c.jpg")
        g.attrs[h5io.COMPLETE] = False
        g.create_dataset("matches0", data=np.zeros(3, np.int16))
    other = tmp_path / "matches.shard-2-of-3.h5"  # left by an earlier run with 3 ranks, killed at once
    other.write_bytes(b"not hdf5")
    assert [p.name for p in shard_files(main)] == [s0.name, s1.name, other.name]
    assert merge_shards(main) == 2
    assert h5io.list_pairs(main) == ["a.jpg/b.jpg", "a.jpg/c.jpg", "dir-x.jpg/c.jpg"]
    np.testing.assert_array_equal(h5io.read_matches(main, "a.jpg", "b.jpg")[0], [[0, 1]])
    assert not h5io.has_pair(main, "b.jpg", "c.jpg")
    assert shard_files(main) == [] and (tmp_path / "matches.shard-2-of-3.h5.unreadable").exists()
    assert not (tmp_path / "matches.h5.tmp").exists()


# ------------------------------------------------------------------------------------- real torchrun jobs
def test_two_processes_give_the_same_features_matches_and_model_as_one(small_scene, tmp_path):
    """SIFT on 7 rendered views, retrieval:4 pairs: N=1 (plain python, 1 thread) and N=2 (torchrun, gloo) write
    identical retrieval descriptors, pairs, features and matches, and map identical models."""
    one, two = tmp_path / "n1", tmp_path / "n2"
    _run(1, small_scene / "images", one, "--pairs", "retrieval:4", *SIFT, threads=1)
    log = _run(2, small_scene / "images", two, "--pairs", "retrieval:4", *SIFT)
    assert "[rank 1/2] matching shard done" in log.stdout
    assert (one / "pairs.txt").read_text() == (two / "pairs.txt").read_text()
    _assert_same_files(one, two, ("pairs-global-descriptors.h5", "features.h5", "matches.h5"))
    r1, r2 = (json.loads((d / "report.json").read_text()) for d in (one, two))
    assert r1["processes"]["world_size"] == 1 and r2["processes"]["world_size"] == 2
    assert r2["mapper_choice"] == {"type": "incremental", "requested": "auto",
                                   "reason": "7 images <= 1000 (GLOBAL_MAPPING_ABOVE)"}
    assert r2["matching"]["pairs_computed"] == r1["matching"]["pairs_computed"] == r1["pairs"]["num_pairs"] >= 14
    assert r2["matching"]["images_extracted"] == 7
    assert r1["database"]["verified_pairs"] == r2["database"]["verified_pairs"]
    m1, m2 = (pycolmap.Reconstruction(str(d / "sfm")) for d in (one, two))
    assert m1.num_reg_images() == m2.num_reg_images() == 7
    assert m1.num_points3D() == m2.num_points3D()
    for im in m1.images.values():
        other = m2.find_image_with_name(im.name)
        assert np.allclose(im.cam_from_world().matrix(), other.cam_from_world().matrix(), atol=1e-9)


def _assert_same_files(one: Path, two: Path, names: tuple[str, ...]) -> None:
    for name in names:
        a, b = h5_arrays(one / name), h5_arrays(two / name)
        assert sorted(a) == sorted(b) and len(a) > 0
        for key in a:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), (name, key)
    assert not list(two.glob("*.shard-*"))


@pytest.mark.slow
def test_seeded_l2m_two_processes_equal_one_at_the_same_threads_per_process(tmp_path):
    """l2m-tiny-fast on 3 rendered views: same raw, quantised and model outputs for N=1 and N=2.

    Each rank of a 2-process job on this 2-core machine gets 1 torch thread; the single process must run with
    1 thread too, because float sums (and so the seeded sampling) change with the thread count.
    """
    scene = sample_scene.main({**SMALL, "num_views": 3}, tmp_path / "scene")
    one, two = tmp_path / "n1", tmp_path / "n2"
    _run(1, scene / "images", one, "--matcher", "l2m-tiny-fast", threads=1)
    _run(2, scene / "images", two, "--matcher", "l2m-tiny-fast")
    _assert_same_files(one, two, ("matches-raw.h5", "features.h5", "matches.h5"))
    m1, m2 = (pycolmap.Reconstruction(str(d / "sfm")) for d in (one, two))
    assert m1.num_reg_images() == m2.num_reg_images() == 3 and m1.num_points3D() == m2.num_points3D() > 50


def _complete_pairs(out: Path) -> set[str]:
    done = set()
    for path in [out / "matches.h5", *shard_files(out / "matches.h5")]:
        try:
            done |= set(h5io.list_pairs(path))
        except (OSError, FileNotFoundError):
            pass
    return done


def _worker_pid(launcher: int, rank: int) -> int | None:
    """PID of the torchrun worker with RANK=rank among the launcher's children."""
    for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
        try:
            env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return int(child)
    return None


def test_kill_9_of_a_rank_then_rerun_recomputes_nothing_finished(small_scene, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(_command(2, small_scene / "images", out, *SIFT), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done: set[str] = set()
    deadline = time.time() + 300
    while time.time() < deadline and len(shard_files(out / "matches.h5")) < 2:  # both ranks are matching
        time.sleep(0.05)
    victim = _worker_pid(proc.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    done = _complete_pairs(out)
    assert not (out / "sfm").exists()
    _run(2, small_scene / "images", out, *SIFT)
    rep = json.loads((out / "report.json").read_text())
    assert rep["matching"]["images_extracted"] == 0  # every image was extracted before the kill
    assert rep["matching"]["pairs_reused"] >= len(done)
    assert rep["matching"]["pairs_computed"] == 21 - rep["matching"]["pairs_reused"] < 21
    assert rep["model"]["registered"] == 7 and not shard_files(out / "matches.h5")


def test_scene_benchmark_on_two_processes_caches_the_same_matches_and_scores_the_same(tmp_path):
    """pipelines/scene_benchmark.py on the sample scene: N=1 and N=2 (torchrun) prediction caches and AUCs agree."""
    scene = REPO / "datasets" / "samples" / "toybox"
    args = ["--scenes", str(scene), "--matchers", "sift", "--limit", "4", "--no-plots",
            "--protocol-conf", "resize=long:320"]
    outs = {}
    for nproc in (1, 2):
        out = outs[nproc] = tmp_path / f"n{nproc}"
        cmd = [str(REPO / "pipelines" / "scene_benchmark.py"), *args, "--output", str(out)]
        cmd = [sys.executable, *cmd] if nproc == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_port", str(29600 + os.getpid() % 1000), *cmd]
        proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    (c1,), (c2,) = (list((outs[n] / "predictions").glob("*.h5")) for n in (1, 2))
    a, b = h5_arrays(c1), h5_arrays(c2)
    assert sorted(a) == sorted(b) and len(a) >= 4 * 3
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not shard_files(c2)
    r1, r2 = (json.loads((outs[n] / "results_poselib.json").read_text())["results"][0] for n in (1, 2))
    assert r1["num_pairs"] == r2["num_pairs"] == 4 and r1["metrics"] == r2["metrics"]
