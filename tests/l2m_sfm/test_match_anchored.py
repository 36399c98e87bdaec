"""Keypoint-anchored dense matching: union semantics, gate, and track length against quantisation."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from l2m.config import ConfigError
from l2m.models.gp import cell_centres
from l2m.models.sampling import anchor_matches, sample_matches, to_pixel_coordinates
from l2m.images import read_image
from l2m_sfm.match_anchored import gate_passes, resolve_conf, union_matches
from l2m_sfm.match_dense import Quantizer, one_to_one


def test_union_never_loses_a_detector_match_and_merges_duplicates():
    rng = np.random.default_rng(0)
    sparse = np.stack([rng.permutation(500)[:120], rng.permutation(400)[:120]], 1)
    dense = np.concatenate([sparse[:40],  # duplicates of detector matches
                            np.stack([np.arange(500, 560), np.arange(400, 460)], 1),  # new keypoints
                            np.stack([sparse[40:50, 0], np.arange(460, 470)], 1)])  # conflict on side 0
    out, scores, conflicts = union_matches(sparse, np.full(120, 0.5), dense, np.full(len(dense), 0.9))
    got = set(map(tuple, out.tolist()))
    assert set(map(tuple, sparse.tolist())) <= got  # every detector match kept
    assert set(map(tuple, dense[40:100].tolist())) <= got  # every non-conflicting dense match kept
    assert conflicts == 10 and len(out) == 120 + 60
    assert len(set(out[:, 0].tolist())) == len(out) and len(set(out[:, 1].tolist())) == len(out)
    merged = dict(zip(map(tuple, out.tolist()), scores.tolist()))
    assert merged[tuple(sparse[0])] == pytest.approx(0.9)  # a duplicate keeps the higher score


def test_union_of_empty_inputs():
    out, scores, conflicts = union_matches(np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2)), np.zeros(0))
    assert out.shape == (0, 2) and len(scores) == 0 and conflicts == 0


def test_gate_and_conf_checks():
    gate = {"min_agreement": 8, "agree_radius_px": 4.0, "min_area": 0.1}
    assert gate_passes({"agreement": 8, "certain_area": 0.2}, gate)
    assert not gate_passes({"agreement": 7, "certain_area": 0.9}, gate)
    assert not gate_passes({"agreement": 50, "certain_area": 0.05}, gate)
    with pytest.raises(ConfigError, match="anchors"):
        resolve_conf({"anchors": "orb"})
    with pytest.raises(ConfigError, match="combine"):
        resolve_conf({"combine": "intersection"})
    # union by default (benchmarks/anchors.py), and the gate then needs the detector's matches anyway
    assert resolve_conf({})["combine"] == "union" and resolve_conf({"combine": "none"})["combine"] == "none"


# ------------------------------------------------------------------ synthetic multi-view scene, exact warps
H, W = 240, 320  # original images; the warps below are at the same resolution


def _affine(k: int) -> tuple[np.ndarray, np.ndarray]:
    """View k of a planar scene: x_k = M_k x + t_k (normalised coordinates of the plane)."""
    a = 0.06 * k
    M = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * (1 - 0.05 * k)
    return M, np.array([0.04 * k, -0.03 * k])


def _warp(i: int, j: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact symmetric warp between views i and j, certainty 1 where the point stays inside the image."""
    Mi, ti = _affine(i)
    Mj, tj = _affine(j)
    g = cell_centres(H, W).double()
    to = lambda x, Ms, ts, Md, td: (((x - torch.from_numpy(ts)) @ torch.from_numpy(np.linalg.inv(Ms)).T)  # noqa
                                    @ torch.from_numpy(Md).T + torch.from_numpy(td))
    i2j, j2i = to(g, Mi, ti, Mj, tj), to(g, Mj, tj, Mi, ti)
    warp = torch.cat((torch.cat((g, i2j), -1), torch.cat((j2i, g), -1)), 1).float()
    cert = torch.cat(((i2j.abs() < 1).all(-1), (j2i.abs() < 1).all(-1)), 1).float()
    return warp, cert


def _tracks(num_views: int, matches: dict[tuple[int, int], np.ndarray]) -> list[int]:
    """Lengths (observations) of the connected components of (view, keypoint) nodes."""
    parent: dict[tuple[int, int], tuple[int, int]] = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for (i, j), m in matches.items():
        for a, b in m.tolist():
            parent[find((i, a))] = find((j, b))
    sizes: dict = {}
    for node in list(parent):
        sizes[find(node)] = sizes.get(find(node), 0) + 1
    return list(sizes.values())


def test_anchored_tracks_are_longer_than_quantised_tracks():
    """4 views of 300 plane points, detector keypoints with 0.3 px noise: anchored matching joins the same
    keypoints in every pair (tracks ~ 4 views); quantising 2000 dense samples per pair (default preset) does not."""
    rng = np.random.default_rng(0)
    views = 4
    plane = rng.uniform(-0.7, 0.7, (300, 2))
    px = np.array([W / 2, H / 2])
    kps = []
    for k in range(views):
        M, t = _affine(k)
        x = plane @ M.T + t
        kps.append(torch.from_numpy(x + rng.normal(0, 0.3, x.shape) / px).float())
    anchored, quantised_raw = {}, {}
    gen = torch.Generator().manual_seed(0)
    for i in range(views):
        for j in range(i + 1, views):
            warp, cert = _warp(i, j)
            ia, ib, _ = anchor_matches(kps[i], kps[j], warp, cert, radius_px=2.0, cert_th=0.5)
            anchored[(i, j)] = torch.stack((ia, ib), 1).numpy()
            m, c = sample_matches(warp, cert, num=2000, generator=gen, kde_refs=512)
            quantised_raw[(i, j)] = (to_pixel_coordinates(m[:, :2], H, W, True).numpy(),
                                     to_pixel_coordinates(m[:, 2:], H, W, True).numpy(), c.numpy())
    # anchored matches join the right plane point (keypoint index = point index in every view); random points
    # closer than the noise can swap
    right = np.concatenate([m[:, 0] == m[:, 1] for m in anchored.values()])
    assert right.mean() >= 0.98, right.mean()
    q = Quantizer(cell_size=4, max_error=2, max_kps=8192)
    for (i, j), (k0, k1, s) in quantised_raw.items():
        q.add(str(i), k0, s)
        q.add(str(j), k1, s)
    for k in range(views):
        q.finalize(str(k))
    quantised = {}
    for (i, j), (k0, k1, s) in quantised_raw.items():
        ids0, ids1 = q.assign(str(i), k0), q.assign(str(j), k1)
        keep = one_to_one(ids0, ids1, s)
        quantised[(i, j)] = np.stack((ids0[keep], ids1[keep]), 1)
    anchored_len = float(np.mean(_tracks(views, anchored)))
    quantised_len = float(np.mean(_tracks(views, quantised)))
    print(f'mean track length anchored {anchored_len:.2f} quantised {quantised_len:.2f}')
    assert anchored_len >= 3.5
    assert anchored_len > quantised_len + 1.0, (anchored_len, quantised_len)


# ------------------------------------------------------------------ the stage on real images (sample scene)
SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "toybox" / "images"


@pytest.fixture()
def small_scene(tmp_path):
    if not SAMPLE.exists():
        pytest.skip(f"sample scene {SAMPLE} missing")
    names = ["view_00.jpg", "view_01.jpg", "view_02.jpg"]
    (tmp_path / "pairs.txt").write_text("view_00.jpg view_01.jpg\nview_00.jpg view_02.jpg\nview_01.jpg view_02.jpg\n")
    return names, tmp_path


def test_stage_writes_detector_keypoints_gates_and_resumes(small_scene):
    from l2m_sfm import h5io, match_anchored
    from l2m_sfm.matchers import get_matcher

    names, tmp = small_scene
    matcher = get_matcher("l2m-tiny", {"weights": "random", "coarse_res": 64, "upsample_res": 0})
    conf = {"anchors": "sift", "combine": "union", "gate": {"min_agreement": 10 ** 6}}  # gate drops every dense match
    stats = match_anchored.main(conf, matcher, SAMPLE, names, tmp / "pairs.txt", tmp / "features.h5",
                                tmp / "matches.h5", progress=False)
    assert stats["pairs_computed"] == 3 and stats["images_extracted"] == 3 and stats["pairs_gated"] == 3
    # union of a fully gated pair = the detector's own matches, exactly
    for n0, n1 in [("view_00.jpg", "view_01.jpg"), ("view_01.jpg", "view_02.jpg")]:
        got, _ = h5io.read_matches(tmp / "matches.h5", n0, n1)
        ref, _ = h5io.read_matches(tmp / "matches-sift.h5", n0, n1)
        assert set(map(tuple, got.tolist())) == set(map(tuple, ref.tolist())) and len(ref) > 50
    sift = get_matcher("sift")
    kp = h5io.read_keypoints(tmp / "features.h5", "view_00.jpg")
    assert np.allclose(kp, sift.extract(read_image(SAMPLE / "view_00.jpg"))["keypoints"])  # detector's, not quantised
    again = match_anchored.main({**conf, "gate": {"min_agreement": 0}}, matcher, SAMPLE, names, tmp / "pairs.txt",
                                tmp / "features.h5", tmp / "matches.h5", progress=False)
    assert again["pairs_computed"] == 0 and again["images_extracted"] == 0 and again["pairs_gated"] == 0
    assert again["matches"] >= stats["matches"]


def test_reconstruct_refuses_anchors_for_a_sparse_matcher(small_scene):
    from l2m_sfm import reconstruct

    names, tmp = small_scene
    conf = reconstruct.resolve_conf({"matcher": {"name": "sift"}, "matching": {"anchors": "sift"}}, 3)
    with pytest.raises(ConfigError, match="dense matchers"):
        reconstruct.run_matching(conf, SAMPLE, names, tmp / "pairs.txt", tmp / "f.h5", tmp / "m.h5", False)
