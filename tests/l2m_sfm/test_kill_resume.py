"""kill -9 at five moments of a seeded reconstruct run: during extraction, matching, verification, mapping and
while writing the model. The rerun completes, reuses what was finished (report.json says what) and gives the
same model as an uninterrupted run.

The kill comes from inside the process (SIGKILL, no cleanup runs), placed by a wrapper that patches one
function of the real pipeline; nothing in l2m_sfm knows about it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from tests.l2m_sfm.test_bad_inputs import FAST, REPO, plain_views, run_cli

NUM_IMAGES, NUM_PAIRS = 6, 15

WRAPPER = r'''
import os, runpy, signal, sys
moment, count = sys.argv[1], int(sys.argv[2])
sys.argv = ["reconstruct"] + sys.argv[3:]
calls = [0]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def after(fn):  # run fn, then die on its count-th call
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        calls[0] += 1
        if calls[0] >= count:
            die()
        return out
    return wrapped

import pycolmap
from l2m_sfm import colmap, h5io
if moment == "extraction":
    h5io.write_keypoints = after(h5io.write_keypoints)
elif moment == "matching":
    h5io.write_matches = after(h5io.write_matches)
elif moment == "verification":  # matches are in database.db.tmp; COLMAP is verifying
    pycolmap.geometric_verification = lambda *args, **kwargs: die()
elif moment == "mapping":  # the count-th image is being registered
    run_mapping = colmap.run_mapping
    class Killer:
        def update(self, n=1):
            calls[0] += 1
            if calls[0] >= count:
                die()
    colmap.run_mapping = lambda *args, progress=None, **kwargs: run_mapping(*args, progress=Killer(), **kwargs)
elif moment == "writing":  # the binary model is written into sfm.tmp, the text model is not
    pycolmap.Reconstruction.write_text = lambda self, path: die()
runpy.run_module("l2m_sfm.reconstruct", run_name="__main__")
'''


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The photos and an uninterrupted run of them."""
    root = tmp_path_factory.mktemp("kill")
    images = plain_views(root / "images", range(NUM_IMAGES))
    code, _, err = run_cli("--images", images, "--output", root / "reference", *FAST)
    assert code == 0, err[-3000:]
    return images, root / "reference"


# moment -> (count: the kill comes at the count-th event, what the rerun must report as reused)
MOMENTS = {
    "extraction": (3, lambda r: r["matching"]["images_reused"] == 3 and r["matching"]["images_extracted"] == 3),
    "matching": (5, lambda r: r["matching"]["images_reused"] == NUM_IMAGES
                 and r["matching"]["pairs_reused"] == 5 and r["matching"]["pairs_computed"] == NUM_PAIRS - 5),
    "verification": (1, lambda r: r["matching"]["pairs_reused"] == NUM_PAIRS and r["database"]["rebuilt"]),
    "mapping": (3, lambda r: r["matching"]["pairs_reused"] == NUM_PAIRS and not r["database"]["rebuilt"]),
    "writing": (1, lambda r: r["matching"]["pairs_reused"] == NUM_PAIRS and not r["database"]["rebuilt"]),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_kill_9_then_rerun_gives_the_same_model(scene, tmp_path, moment):
    images, reference = scene
    out = tmp_path / "out"
    count, reused = MOMENTS[moment]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, "-c", WRAPPER, moment, str(count), "--images", str(images), "--output",
                             str(out), *FAST], env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (out / "sfm" / "text").exists()  # no model looks finished

    code, _, err = run_cli("--images", images, "--output", out, *FAST)
    assert code == 0, err[-3000:]
    rep = _report(out)
    assert reused(rep), {k: rep[k] for k in ("matching", "database")}
    ref = _report(reference)
    assert rep["model"]["registered_names"] == ref["model"]["registered_names"]
    assert rep["model"]["points3D"] == ref["model"]["points3D"]
    a, b = pycolmap.Reconstruction(str(out / "sfm")), pycolmap.Reconstruction(str(reference / "sfm"))
    for image in b.images.values():
        np.testing.assert_allclose(a.find_image_with_name(image.name).cam_from_world().matrix(),
                                   image.cam_from_world().matrix(), atol=1e-9)
