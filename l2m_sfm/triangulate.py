"""Triangulate 3D points from matches with KNOWN camera poses (e.g. a ground-truth or prior model).

    python -m l2m_sfm.triangulate --model GT --features features.h5 --matches matches.h5 --pairs pairs.txt \
        --output OUT [--images DIR] [--max-epipolar-error 4]

The database copies the model's cameras, rigs, frames and images with their ids, gets the keypoints
(hloc convention + 0.5) and the matches, and for every pair a CALIBRATED two-view geometry whose inliers
are the matches consistent with the known poses (symmetric epipolar distance below the threshold, in
pixels). COLMAP 4 skips geometries without a config, which would leave 0 points. Then
`pycolmap.triangulate_points` fills in the points; the poses are not changed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from l2m.config import merge_conf, parse_overrides, write_conf
from l2m_sfm.colmap import (ColmapError, check_options, colmap_logging, iter_pair_matches, model_stats,
                            write_model)

default_conf = {
    "max_epipolar_error": 4.0,  # px: symmetric epipolar distance of an inlier given the known poses
    "min_match_score": None,
    "options": {},  # IncrementalPipelineOptions for triangulate_points, e.g. {"triangulation": {"min_angle": 2}}
    "refine_intrinsics": False,
}


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])


def epipolar_inliers(cam0: pycolmap.Camera, cam1: pycolmap.Camera, cam1_from_cam0: pycolmap.Rigid3d,
                     xy0: np.ndarray, xy1: np.ndarray, max_error_px: float) -> np.ndarray:
    """Mask of correspondences (COLMAP pixel convention) within `max_error_px` of the known epipolar geometry."""
    x0 = np.asarray(cam0.cam_from_img(xy0.astype(np.float64)))
    x1 = np.asarray(cam1.cam_from_img(xy1.astype(np.float64)))
    x0 = np.concatenate([x0[:, :2], np.ones((len(x0), 1))], 1)
    x1 = np.concatenate([x1[:, :2], np.ones((len(x1), 1))], 1)
    M = cam1_from_cam0.matrix()
    E = _skew(M[:, 3]) @ M[:, :3]
    l1 = x0 @ E.T  # epipolar lines in image 1 (normalised coordinates)
    l0 = x1 @ E
    num = np.abs((x1 * l1).sum(1))
    d1 = num / np.maximum(np.hypot(l1[:, 0], l1[:, 1]), 1e-12)
    d0 = num / np.maximum(np.hypot(l0[:, 0], l0[:, 1]), 1e-12)
    thr0 = cam0.cam_from_img_threshold(max_error_px)
    thr1 = cam1.cam_from_img_threshold(max_error_px)
    return (d0 <= thr0) & (d1 <= thr1)


def create_database_from_model(model: pycolmap.Reconstruction, database_path: Path) -> dict[str, int]:
    """Database with the model's cameras, rigs, frames and images (ids preserved); returns name -> id."""
    database_path = Path(database_path)
    if database_path.exists():
        database_path.unlink()
    with pycolmap.Database.open(str(database_path)) as db:
        for cam in model.cameras.values():
            db.write_camera(cam, use_camera_id=True)
        for rig in model.rigs.values():
            db.write_rig(rig, use_rig_id=True)
        for frame in model.frames.values():
            db.write_frame(frame, use_frame_id=True)
        for image in model.images.values():
            db.write_image(pycolmap.Image(name=image.name, camera_id=image.camera_id, image_id=image.image_id),
                           use_image_id=True)
    return {im.name: im.image_id for im in model.images.values()}


def main(conf: dict[str, Any] | None, model_path: Path, features: Path, matches: Path, pairs: Path,
         output: Path, image_dir: Path | None = None) -> Path:
    """Triangulate with the poses of `model_path`; writes OUT/database.db and OUT/sfm (bin + text)."""
    from l2m_sfm.h5io import H5LookupError, read_keypoints
    from l2m_sfm.pairs import parse_pairs

    conf = merge_conf(default_conf, conf, "triangulate")
    options = check_options(conf["options"], pycolmap.IncrementalPipelineOptions, "triangulate.options")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model = pycolmap.Reconstruction(str(model_path))
    for pid in list(model.points3D):
        model.delete_point3D(pid)
    database = output / "database.db"
    ids = create_database_from_model(model, database)
    stats = {"pairs": 0, "matches": 0, "inliers": 0, "missing": 0}
    with pycolmap.Database.open(str(database)) as db:
        keypoints = {}
        for name, image_id in ids.items():
            try:
                kps = read_keypoints(features, name).astype(np.float64) + 0.5
            except H5LookupError:
                kps = np.zeros((0, 2))
            keypoints[name] = kps
            db.write_keypoints(image_id, kps.astype(np.float32))
        for a, b, m in iter_pair_matches(ids, parse_pairs(pairs), matches, conf["min_match_score"], stats):
            ia, ib = model.images[ids[a]], model.images[ids[b]]
            b_from_a = ib.cam_from_world() * ia.cam_from_world().inverse()
            ok = epipolar_inliers(model.cameras[ia.camera_id], model.cameras[ib.camera_id], b_from_a,
                                  keypoints[a][m[:, 0]], keypoints[b][m[:, 1]], conf["max_epipolar_error"])
            db.write_matches(ids[a], ids[b], m)
            tvg = pycolmap.TwoViewGeometry()
            tvg.config = pycolmap.TwoViewGeometryConfiguration.CALIBRATED
            tvg.cam2_from_cam1 = b_from_a
            tvg.inlier_matches = m[ok]
            db.write_two_view_geometry(ids[a], ids[b], tvg)
            stats["pairs"] += 1
            stats["matches"] += len(m)
            stats["inliers"] += int(ok.sum())
    sfm_tmp = output / "sfm.triangulation"
    sfm_tmp.mkdir(exist_ok=True)
    with colmap_logging(output / "colmap.log."):
        result = pycolmap.triangulate_points(model, str(database), str(image_dir or output), str(sfm_tmp),
                                             clear_points=True,
                                             options=pycolmap.IncrementalPipelineOptions(options),
                                             refine_intrinsics=conf["refine_intrinsics"])
    if result.num_points3D() == 0:
        raise ColmapError(f"Triangulation produced no points ({stats['inliers']} epipolar inliers over "
                          f"{stats['pairs']} pairs). Check that {features} and {matches} belong to the images of "
                          f"{model_path} (same names and sizes), or raise --max-epipolar-error.")
    write_model(result, output / "sfm")
    import shutil
    shutil.rmtree(sfm_tmp, ignore_errors=True)
    write_conf({"conf": conf, "stats": stats, "model": model_stats(result)}, output / "triangulation.json")
    return output / "sfm"


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Triangulate points from matches with known camera poses.")
    parser.add_argument("--model", type=Path, required=True, help="COLMAP model with the known poses")
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--matches", type=Path, required=True)
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--images", type=Path, default=None, help="image folder (only for point colours)")
    parser.add_argument("--max-epipolar-error", type=float, default=default_conf["max_epipolar_error"])
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. options.triangulation.min_angle=2")
    args = parser.parse_args(argv)
    conf = parse_overrides(args.overrides)
    conf["max_epipolar_error"] = args.max_epipolar_error
    sfm = main(conf, args.model, args.features, args.matches, args.pairs, args.output, args.images)
    s = model_stats(pycolmap.Reconstruction(str(sfm)))
    print(f"{s['points3D']} points, mean track length {s['mean_track_length']:.2f}, "
          f"mean reprojection error {s['mean_reprojection_error_px']:.3f} px -> {sfm}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
