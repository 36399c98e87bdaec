"""Synthetic benchmark data for the pipeline tests: cameras with known poses looking at random 3D points,
noise images of the right sizes written in the MegaDepth / ScanNet / scene layouts, and an oracle matcher
that returns the true projections (plus optional noise and outliers) in pixels of the images it is given.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np

from l2m_sfm.matchers import PairMatches
from script_loader import load_script as load_pipeline_file

REPO = Path(__file__).resolve().parents[2]


def load_script(name: str):
    """Import pipelines/<name>.py as a module (pipelines are scripts, not a package)."""
    return load_pipeline_file(f"pipelines/{name}.py")


def look_at(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    """4x4 world-to-camera pose of a camera at `center` looking at `target` (y down)."""
    z = target - center
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, -1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, -R @ center
    return T


class World:
    """Random points and posed pinhole cameras; K in the COLMAP convention (pixel centres at +0.5)."""

    def __init__(self, sizes: list[tuple[int, int]], seed: int = 0, num_points: int = 1500,
                 K: np.ndarray | None = None):
        rng = np.random.default_rng(seed)
        self.points = rng.uniform([-2.5, -1.8, -1.0], [2.5, 1.8, 1.0], (num_points, 3))
        self.cams = []
        for i, (w, h) in enumerate(sizes):
            angle = np.radians(-24 + 48 * i / max(len(sizes) - 1, 1))
            center = np.array([7 * np.sin(angle), rng.uniform(-0.6, 0.6), -7 * np.cos(angle)])
            f = 0.9 * max(w, h) * rng.uniform(0.9, 1.1)
            K = np.array([[f, 0, w / 2 + rng.uniform(-3, 3)], [0, f * 1.002, h / 2 + rng.uniform(-3, 3)], [0, 0, 1]]) \
                if K is None else np.asarray(K, np.float64)
            self.cams.append((K, look_at(center, rng.normal(0, 0.2, 3)), (w, h)))

    def project(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(hloc-convention pixels in image i at its original size, visibility mask)."""
        K, T, (w, h) = self.cams[i]
        Xc = self.points @ T[:3, :3].T + T[:3, 3]
        uv = Xc @ K.T
        xy = uv[:, :2] / uv[:, 2:] - 0.5
        ok = (Xc[:, 2] > 0.1) & (xy[:, 0] > 0) & (xy[:, 0] < w - 1) & (xy[:, 1] > 0) & (xy[:, 1] < h - 1)
        return xy, ok

    def write_image(self, i: int, path: Path) -> Path:
        """A random-texture JPEG of camera i's size (content is irrelevant for the oracle matcher)."""
        w, h = self.cams[i][2]
        img = np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img)
        return path


class OracleMatcher:
    """PairMatcher returning true correspondences, in pixels of the given images.

    `index` maps an image name to (world, camera index); both images of a pair must share the world.
    """

    dense = False

    def __init__(self, index: dict[str, tuple[World, int]], noise: float = 0.0, outliers: float = 0.0,
                 name: str = "oracle"):
        self.index, self.noise, self.outliers, self.name = index, noise, outliers, name
        self.conf = {"noise": noise, "outliers": outliers}
        self.calls = 0

    def match_pair(self, image0, image1, name0=None, name1=None) -> PairMatches:
        self.calls += 1
        (world, i), (world1, j) = self.index[name0], self.index[name1]
        assert world is world1
        (x0, ok0), (x1, ok1) = world.project(i), world.project(j)
        ok = ok0 & ok1
        out = []
        for x, cam, image in ((x0[ok], world.cams[i], image0), (x1[ok], world.cams[j], image1)):
            (w, h), (gw, gh) = cam[2], (image.shape[1], image.shape[0])
            out.append((x + 0.5) * [gw / w, gh / h] - 0.5)  # original frame -> the given image's frame
        rng = np.random.default_rng(zlib.crc32(f"{name0}{name1}".encode()))
        k0, k1 = (k + rng.normal(0, self.noise, k.shape) for k in out)
        n_out = int(self.outliers * len(k1))
        k1[:n_out] = rng.uniform(0, [image1.shape[1], image1.shape[0]], (n_out, 2))
        scores = rng.uniform(0.5, 1.0, len(k0)).astype(np.float32)
        return PairMatches(k0.astype(np.float32), k1.astype(np.float32), scores)


def install_oracle(monkeypatch, matcher: OracleMatcher, name: str = "oracle") -> None:
    """Register `matcher` under `name` for get_matcher (and the CLI choices) for one test."""
    import l2m_sfm.matchers as matchers

    monkeypatch.setitem(matchers.MATCHERS, name, "tests:oracle")
    real = matchers.get_matcher
    monkeypatch.setattr(matchers, "get_matcher",
                        lambda n, conf=None, device="cpu": matcher if n == name else real(n, conf, device))


def relative(world: World, i: int, j: int) -> np.ndarray:
    """T_0to1 between cameras i and j."""
    return world.cams[j][1] @ np.linalg.inv(world.cams[i][1])


def write_megadepth(root: Path, world: World, stems: dict[str, list[tuple[int, int]]], scene: str = "0015"
                    ) -> tuple[Path, Path, dict[str, tuple[World, int]]]:
    """LoFTR layout: <root>/Undistorted_SfM/<scene>/images/*.jpg and <root>/scene_info/<stem>.npz + list file.

    Returns (data root, meta folder, oracle index name -> (world, camera)). The npz arrays have None holes
    like the real ones.
    """
    n = len(world.cams)
    paths = np.empty(2 * n + 1, object)
    Ks, poses, depths = (np.empty(2 * n + 1, object) for _ in range(3))
    index = {}
    for i in range(n):
        name = f"Undistorted_SfM/{scene}/images/img{i:02d}.jpg"
        world.write_image(i, root / name)
        k = 2 * i + 1  # every other slot stays None
        paths[k], Ks[k], poses[k], depths[k] = name, world.cams[i][0], world.cams[i][1], f"depths/img{i:02d}.h5"
        index[name] = (world, i)
    meta = root / "scene_info"
    meta.mkdir(parents=True, exist_ok=True)
    for stem, pairs in stems.items():
        infos = [(np.array([2 * i + 1, 2 * j + 1], np.int64), 0.2, np.zeros(4)) for i, j in pairs]
        info_arr = np.empty(len(infos), object)
        info_arr[:] = infos
        np.savez(meta / f"{stem}.npz", image_paths=paths, depth_paths=depths, intrinsics=Ks, poses=poses,
                 pair_infos=info_arr)
    (meta / "megadepth_test_1500.txt").write_text("\n".join(stems))
    return root, meta, index


def write_scannet(root: Path, meta: Path, worlds: dict[str, World], pairs: dict[str, list[tuple[int, int]]],
                  K_file: dict[str, np.ndarray]) -> dict[str, tuple[World, int]]:
    """LoFTR layout: <root>/<scene>/color/<frame>.jpg, <meta>/test.npz (name, rel_pose), intrinsics.npz.

    Frame number = 10 * camera index. Returns the oracle index: '<scene>/color/<frame>.jpg' -> (world, camera)."""
    names, rel, index = [], [], {}
    for scene, world in worlds.items():
        sid, sub = int(scene[5:9]), int(scene[10:12])
        for i in range(len(world.cams)):
            world.write_image(i, root / scene / "color" / f"{10 * i}.jpg")
            index[f"{scene}/color/{10 * i}.jpg"] = (world, i)
        for i, j in pairs[scene]:
            names.append([sid, sub, 10 * i, 10 * j])
            rel.append(relative(world, i, j)[:3].reshape(-1))
    meta.mkdir(parents=True, exist_ok=True)
    np.savez(meta / "test.npz", name=np.array(names, np.uint16), rel_pose=np.array(rel, np.float32))
    np.savez(meta / "intrinsics.npz", **{k: np.asarray(v, np.float64) for k, v in K_file.items()})
    (meta / "scannet_test.txt").write_text("test.npz")
    return index


def write_colmap_scene(scene: Path, world: World, names: list[str]) -> dict[str, tuple[World, int]]:
    """<scene>/images/<names>, <scene>/gt/{cameras,images,points3D}.txt (one PINHOLE camera per image)."""
    import pycolmap

    gt = scene / "gt"
    gt.mkdir(parents=True, exist_ok=True)
    cams, imgs = [], []
    for i, name in enumerate(names):
        K, T, (w, h) = world.cams[i]
        world.write_image(i, scene / "images" / name)
        params = " ".join(repr(float(v)) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
        cams.append(f"{i + 1} PINHOLE {w} {h} {params}")
        qx, qy, qz, qw = pycolmap.Rotation3d(T[:3, :3]).quat
        pose = " ".join(repr(float(v)) for v in (qw, qx, qy, qz, *T[:3, 3]))
        imgs.append(f"{i + 1} {pose} {i + 1} {name}\n")
    (gt / "cameras.txt").write_text("\n".join(cams) + "\n")
    (gt / "images.txt").write_text("\n".join(imgs) + "\n")
    (gt / "points3D.txt").write_text("")
    return {f"{scene.name}/{n}": (world, i) for i, n in enumerate(names)}
