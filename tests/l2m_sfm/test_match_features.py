import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from l2m.config import ConfigError
from l2m_sfm import h5io, match_features
from l2m_sfm.pairs import pairs_exhaustive, write_pairs


class GridMatcher:
    """Cheap fake sparse matcher: keypoints on a grid, matches by index; counts its calls."""

    name = "grid"
    dense = False

    def __init__(self, kill_after: int | None = None):
        self.extracted, self.matched, self.kill_after = 0, 0, kill_after

    def extract(self, image):
        self.extracted += 1
        n = int(image[0, 0, 0]) + 5  # a different keypoint count per image
        kp = np.stack([np.arange(n), np.arange(n)], 1).astype(np.float32)
        return {"keypoints": kp, "scores": np.ones(n), "descriptors": np.eye(n, 8),
                "image_size": np.array(image.shape[1::-1])}

    def match(self, f0, f1):
        if self.kill_after is not None and self.matched == self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # die between two pairs, no cleanup
        self.matched += 1
        n = min(len(f0["keypoints"]), len(f1["keypoints"]))
        return np.stack([np.arange(n), np.arange(n)[::-1]], 1), np.linspace(0.1, 1, n)


def _scene(tmp_path, n=5):
    img = tmp_path / "images"
    (img / "sub").mkdir(parents=True)
    names = [f"{i}.png" if i % 2 else f"sub/{i}.png" for i in range(n)]
    for i, name in enumerate(names):
        Image.fromarray(np.full((16, 24, 3), i, np.uint8)).save(img / name)
    pairs = write_pairs(pairs_exhaustive(names), tmp_path / "pairs.txt")
    return img, sorted(names), pairs


def test_extract_match_and_resume(tmp_path):
    img, names, pairs = _scene(tmp_path)
    feats, matches = tmp_path / "f.h5", tmp_path / "m.h5"
    m = GridMatcher()
    stats = match_features.main({"matcher": m}, img, names, pairs, feats, matches, progress=False)
    assert stats == {"pairs_total": 10, "pairs_reused": 0, "pairs_computed": 10, "images_extracted": 5,
                     "images_reused": 0}
    assert h5io.read_features(feats, "sub/2.png")["image_size"].tolist() == [24, 16]
    idx, sc = h5io.read_matches(matches, "sub/2.png", "3.png")  # 7 vs 8 kps, stored as (3, sub/2)
    assert len(idx) == 7 and idx[0].tolist() == [6, 0] and np.isclose(sc.max(), 1, atol=1e-3)
    m2 = GridMatcher()
    stats = match_features.main({"matcher": m2}, img, names, pairs, feats, matches, progress=False)
    assert stats["pairs_reused"] == 10 and stats["images_reused"] == 5 and m2.extracted == m2.matched == 0
    stats = match_features.main({"matcher": m2}, img, names, pairs, feats, matches, overwrite=True,
                                progress=False)
    assert stats["pairs_computed"] == 10 and m2.extracted == 5
    with pytest.raises(ConfigError, match="matcher 'grid'.*not 'sift'"):
        match_features.main({"matcher": "sift"}, img, names, pairs, feats, matches, progress=False)


_RUN = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from test_match_features import GridMatcher, _scene
    from l2m_sfm import match_features
    tmp = Path(sys.argv[1])
    img, names, pairs = _scene(tmp)
    match_features.main({"matcher": GridMatcher(kill_after=4)}, img, names, pairs, tmp / "f.h5", tmp / "m.h5",
                        progress=False)
""")


def test_kill_9_during_matching_resumes(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _RUN, str(tmp_path), os.path.dirname(__file__)],
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    img, pairs = tmp_path / "images", tmp_path / "pairs.txt"
    names = sorted(["sub/0.png", "1.png", "sub/2.png", "3.png", "sub/4.png"])
    m = GridMatcher()
    stats = match_features.main({"matcher": m}, img, names, pairs, tmp_path / "f.h5", tmp_path / "m.h5",
                                progress=False)
    assert stats["pairs_reused"] == 4 and stats["pairs_computed"] == 6 and m.matched == 6
    assert stats["images_reused"] == 5
    assert len(h5io.list_pairs(tmp_path / "m.h5")) == 10


def test_real_sift_on_shifted_texture(tmp_path):
    rng = np.random.default_rng(0)
    base = (rng.random((60, 80)) * 255).astype(np.uint8)
    base = np.array(Image.fromarray(base).resize((320, 240), Image.BICUBIC))
    img = tmp_path / "images"
    img.mkdir()
    Image.fromarray(base[:, :280]).save(img / "a.png")
    Image.fromarray(base[:, 40:]).save(img / "b.png")  # b = a shifted by 40 px
    pairs = write_pairs([("a.png", "b.png")], tmp_path / "p.txt")
    match_features.main({"matcher": "sift"}, img, ["a.png", "b.png"], pairs, tmp_path / "f.h5",
                        tmp_path / "m.h5", progress=False)
    idx, _ = h5io.read_matches(tmp_path / "m.h5", "a.png", "b.png")
    k0, k1 = h5io.read_keypoints(tmp_path / "f.h5", "a.png"), h5io.read_keypoints(tmp_path / "f.h5", "b.png")
    d = k0[idx[:, 0]] - k1[idx[:, 1]]
    assert len(idx) > 50
    assert np.median(np.abs(d - [40, 0]).max(1)) < 0.1  # exact shift in hloc pixel convention
