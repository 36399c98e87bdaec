"""Pair lists with ground truth for the two-view benchmarks: MegaDepth-1500, ScanNet-1500, COLMAP scenes.

Every loader returns `BenchPair`s: image names (relative to an image root), intrinsics exactly as stored in
the index files (COLMAP convention: top-left pixel centre at (0.5, 0.5)) together with the (w, h) they refer
to, and T_0to1 (X_cam1 = T_0to1 X_cam0). Formats: ../shared/spec/benchmark_protocol.md §1; where to get the
files: datasets/README.md.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from l2m.geometry import relative_pose

README_HINT = "see datasets/README.md"


class BenchmarkDataError(FileNotFoundError):
    """A benchmark index or image file that is missing or malformed; the message says where to get it."""


@dataclass
class BenchPair:
    """One evaluation pair; K in the COLMAP pixel convention at `K_size` (None: the image as stored)."""

    name0: str
    name1: str
    K0: np.ndarray
    K1: np.ndarray
    T_0to1: np.ndarray
    K_size0: tuple[int, int] | None = None
    K_size1: tuple[int, int] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise BenchmarkDataError(f"{what} not found: {path} ({README_HINT})")
    return path


# ---------------------------------------------------------------------------------------------------------
# MegaDepth-1500 (LoFTR scene-info npz files)

MEGADEPTH_LIST = "megadepth_test_1500.txt"
MEGADEPTH_META_DIRS = ("", "megadepth_test_1500_scene_info", "scene_info", "megadepth1500")


def find_meta_dir(root: Path, list_file: str, subdirs: tuple[str, ...]) -> Path:
    """The folder under `root` (itself or a known sub-folder) that holds `list_file`."""
    for sub in subdirs:
        if (Path(root) / sub / list_file).exists():
            return Path(root) / sub
    tried = ", ".join(str(Path(root) / s / list_file) for s in subdirs)
    raise BenchmarkDataError(f"No {list_file} found (tried {tried}); pass --meta <folder with it> "
                             f"({README_HINT})")


def load_megadepth1500(meta_dir: Path) -> list[BenchPair]:
    """The 1500 pairs of the LoFTR split from `megadepth_test_1500.txt` and its five npz files."""
    meta_dir = Path(meta_dir)
    stems = [s.strip() for s in _require(meta_dir / MEGADEPTH_LIST, "MegaDepth-1500 list").read_text().split()]
    pairs: list[BenchPair] = []
    for stem in stems:
        npz = _require(meta_dir / f"{stem}.npz", "MegaDepth-1500 scene info")
        try:
            data = np.load(npz, allow_pickle=True)
            paths, Ks, poses, infos = (data["image_paths"], data["intrinsics"], data["poses"],
                                       data["pair_infos"])
        except (KeyError, ValueError, OSError) as e:
            raise BenchmarkDataError(f"{npz} is not a LoFTR scene-info file ({e}); expected keys image_paths, "
                                     f"intrinsics, poses, pair_infos ({README_HINT})") from e
        for k, (idx, overlap, _central) in enumerate(infos):
            i, j = int(idx[0]), int(idx[1])
            if paths[i] is None or paths[j] is None or poses[i] is None or poses[j] is None:
                raise BenchmarkDataError(f"{npz}: pair {k} refers to an image without path/pose ({i}, {j})")
            T = relative_pose(np.asarray(poses[i], np.float64), np.asarray(poses[j], np.float64))
            pairs.append(BenchPair(str(paths[i]), str(paths[j]), np.asarray(Ks[i], np.float64),
                                   np.asarray(Ks[j], np.float64), T,
                                   info={"scene_info": stem, "idx0": i, "idx1": j, "overlap": float(overlap)}))
    return pairs


def load_pairs_with_gt(path: Path) -> list[BenchPair]:
    """SuperGlue "pairs_with_gt" lines: name0 name1 rot0 rot1 K0(9) K1(9) T_0to1(16) [extra columns]."""
    pairs = []
    for lineno, line in enumerate(_require(Path(path), "pair list").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split()
        try:
            v = np.array(f[2:38], np.float64)
            K0, K1, T = v[2:11].reshape(3, 3), v[11:20].reshape(3, 3), v[20:36].reshape(4, 4)
        except ValueError as e:
            raise BenchmarkDataError(f"{path}:{lineno}: not a pairs_with_gt line ({e})") from e
        if int(v[0]) or int(v[1]):
            raise BenchmarkDataError(f"{path}:{lineno}: EXIF rotations {f[2]} {f[3]} are not supported")
        pairs.append(BenchPair(f[0], f[1], K0, K1, T, info={"extra": f[38:]}))
    return pairs


def megadepth_image_candidates(root: Path, name: str) -> list[Path]:
    """Where a MegaDepth image may lie: LoFTR layout `<root>/Undistorted_SfM/<scene>/images/<file>`, or
    flat per-scene folders `<root>/images/<scene>/<file>` / `<root>/<scene>/images/<file>`."""
    parts = Path(name).parts
    scene = parts[1] if len(parts) >= 4 and parts[0] == "Undistorted_SfM" else ""
    out = [Path(root) / name]
    if scene:
        out += [Path(root) / "images" / scene / parts[-1], Path(root) / scene / "images" / parts[-1]]
    return out


# ---------------------------------------------------------------------------------------------------------
# ScanNet-1500 (LoFTR test.npz + intrinsics.npz)

SCANNET_LIST = "scannet_test.txt"
SCANNET_META_DIRS = ("", "scannet_test_1500", "scannet_indices", "scannet1500")


def load_scannet1500(meta_dir: Path) -> list[BenchPair]:
    """The pairs of `test.npz` (name, rel_pose) with K of `intrinsics.npz` (640x480, COLMAP convention)."""
    meta_dir = Path(meta_dir)
    list_file = meta_dir / SCANNET_LIST
    npz_names = list_file.read_text().split() if list_file.exists() else ["test.npz"]
    intr_path = _require(meta_dir / "intrinsics.npz", "ScanNet-1500 intrinsics.npz")
    intrinsics = dict(np.load(intr_path))
    pairs = []
    for npz_name in npz_names:
        npz = _require(meta_dir / npz_name, "ScanNet-1500 test.npz")
        data = np.load(npz)
        if "name" not in data or "rel_pose" not in data:
            raise BenchmarkDataError(f"{npz} lacks 'name' / 'rel_pose' (has {list(data.keys())}) ({README_HINT})")
        names, rel = np.asarray(data["name"]), np.asarray(data["rel_pose"], np.float64)
        if names.ndim != 2 or names.shape[1] != 4 or rel.shape != (len(names), 12):
            raise BenchmarkDataError(f"{npz}: name {names.shape} / rel_pose {rel.shape}, expected (N,4) / (N,12)")
        for k, ((scene_id, sub_id, f0, f1), r) in enumerate(zip(names, rel)):
            scene = f"scene{int(scene_id):04d}_{int(sub_id):02d}"
            if scene not in intrinsics:
                raise BenchmarkDataError(f"{intr_path} has no key {scene} (needed by pair {k} of {npz})")
            K = np.asarray(intrinsics[scene], np.float64).reshape(3, 3)
            T = np.eye(4)
            T[:3, :4] = r.reshape(3, 4)
            pairs.append(BenchPair(f"{scene}/color/{int(f0)}.jpg", f"{scene}/color/{int(f1)}.jpg", K, K.copy(),
                                   T, (640, 480), (640, 480), info={"scene": scene, "frames": (int(f0), int(f1))}))
    return pairs


def scannet_image_candidates(root: Path, name: str) -> list[Path]:
    """LoFTR layout `<root>/<scene>/color/<frame>.jpg`, or ScanNet/SuperGlue
    `<root>/[scans_test/]<scene>/sens/frame-%06d.color.jpg`."""
    scene, _, file = Path(name).parts
    frame = int(Path(file).stem)
    sens = f"frame-{frame:06d}.color.jpg"
    return [Path(root) / name, Path(root) / "scans_test" / scene / "sens" / sens, Path(root) / scene / "sens" / sens]


# ---------------------------------------------------------------------------------------------------------
# Scenes with a COLMAP ground-truth model: <scene>/images, <scene>/gt, <scene>/pairs.txt


def default_scene_pairs(names: list[str], max_gap: int = 3) -> list[tuple[str, str]]:
    """All (i, j), i < j, j - i <= max_gap in sorted name order (the rule of ../shared/data/strecha)."""
    names = sorted(names)
    return [(names[i], names[j]) for i, j in itertools.combinations(range(len(names)), 2) if j - i <= max_gap]


def read_pair_file(path: Path) -> list[tuple[str, str]]:
    """hloc pair file: `name0 name1` per line; '#' comments and blank lines ignored."""
    out = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        f = line.split()
        if len(f) < 2:
            raise BenchmarkDataError(f"{path}:{lineno}: expected 'name0 name1', got {line!r}")
        out.append((f[0], f[1]))
    return out


def load_scene(scene_dir: Path, max_gap: int = 3) -> list[BenchPair]:
    """Pairs of one scene with GT from `<scene>/gt` (COLMAP model, pinhole cameras); names relative to images/."""
    import pycolmap

    scene_dir = Path(scene_dir)
    gt = _require(scene_dir / "gt", "Ground-truth COLMAP model folder")
    _require(scene_dir / "images", "Scene image folder")
    try:
        rec = pycolmap.Reconstruction(str(gt))
    except Exception as e:  # pycolmap raises plain RuntimeError/ValueError on broken models
        raise BenchmarkDataError(f"Cannot read the COLMAP model in {gt}: {e}") from e
    by_name = {img.name: img for img in rec.images.values()}
    pair_file = scene_dir / "pairs.txt"
    names = read_pair_file(pair_file) if pair_file.exists() else default_scene_pairs(list(by_name), max_gap)
    pairs = []
    for n0, n1 in names:
        for n in (n0, n1):
            if n not in by_name:
                raise BenchmarkDataError(f"{pair_file}: image {n} is not in the ground truth {gt}")
        im0, im1 = by_name[n0], by_name[n1]
        cams = [rec.cameras[im.camera_id] for im in (im0, im1)]
        for cam in cams:
            if cam.model.name not in ("PINHOLE", "SIMPLE_PINHOLE"):
                raise BenchmarkDataError(f"{gt}: camera {cam.camera_id} is {cam.model.name}; the scene benchmark "
                                         "needs undistorted images with PINHOLE/SIMPLE_PINHOLE cameras")
        T0, T1 = (np.vstack([im.cam_from_world().matrix(), [0, 0, 0, 1]]) for im in (im0, im1))
        pairs.append(BenchPair(n0, n1, cams[0].calibration_matrix(), cams[1].calibration_matrix(),
                               relative_pose(T0, T1), (cams[0].width, cams[0].height),
                               (cams[1].width, cams[1].height),
                               info={"scene": scene_dir.name, "pair_file": "pairs.txt" if pair_file.exists()
                                     else f"generated (j - i <= {max_gap})"}))
    return pairs


def resolve_images(pairs: list[BenchPair], candidates: Callable[[str], list[Path]], what: str
                   ) -> dict[str, Path]:
    """name -> existing file for every image of `pairs`; raises listing the first missing files."""
    found, missing = {}, []
    for name in dict.fromkeys(n for p in pairs for n in (p.name0, p.name1)):
        paths = candidates(name)
        hit = next((p for p in paths if p.is_file()), None)
        if hit is None:
            missing.append(paths[0])
        else:
            found[name] = hit
    if missing:
        shown = "\n  ".join(str(m) for m in missing[:5])
        raise BenchmarkDataError(f"{len(missing)} {what} image(s) missing, e.g.\n  {shown}\nPut the test images "
                                 f"where datasets/README.md says and point --data-root at them.")
    return found
