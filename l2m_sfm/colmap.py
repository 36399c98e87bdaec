"""COLMAP side of the pipeline (pycolmap 4.2.x): database, geometric verification, mapping, model output.

Conventions: keypoints in the HDF5 files use the hloc convention (centre of the top-left pixel at (0, 0));
COLMAP wants the top-left image corner at (0, 0), so `import_features` adds exactly +0.5. Cameras are
written by us (not `pycolmap.import_images`) because COLMAP reads raw pixels and ignores the EXIF
orientation: image sizes come from `l2m.images.image_size` (EXIF applied), like the matchers' pixels.
Every two-view geometry we write carries a config (COLMAP 4 silently skips UNDEFINED ones).
Option dicts are validated against pycolmap's `todict()` so a typo is a clear error, not a TypeError.

Alone, it turns the HDF5 files of a matching stage into a model (the images of the pair file):

    python -m l2m_sfm.colmap --images DIR --pairs pairs.txt --features features.h5 --matches matches.h5 \
        --output OUT [--mapper incremental|global] [--camera-mode auto] [--intrinsics fx,fy,cx,cy]
    # -> OUT/database.db, OUT/sfm (binary) + OUT/sfm/text
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import pycolmap

from l2m.config import ConfigError

CAMERA_MODES = ("auto", "single", "per-folder", "per-image")
# Feature/matcher types of pycolmap that abort the process (wheel built without ONNX): never select them.
FORBIDDEN_TYPES = ("ALIKED", "LIGHTGLUE", "LOMA", "ONNX")

# hloc's verification settings: more RANSAC trials and a lower inlier ratio than COLMAP's defaults,
# since dense / learned matches have more outliers per pair than SIFT + ratio test.
# random_seed: COLMAP's default (-1) seeds RANSAC from the clock, so the same matches verified twice gave
# different inlier sets and, downstream, 12/12 then 7/12 registered images (opensfm_lund, first 12 images).
default_verification = {"ransac": {"max_num_trials": 20000, "min_inlier_ratio": 0.1, "random_seed": 0}}
default_mapper = {"num_threads": 2}


class ColmapError(RuntimeError):
    """A COLMAP stage failed; the message says which and what to try."""


# ---------------------------------------------------------------------------------------------------- options
def check_options(options: Mapping[str, Any] | None, cls: type, where: str) -> dict:
    """Return `options` as a dict after checking every (nested) key against `cls().todict()`."""
    options = dict(options or {})
    _check_keys(options, cls().todict(), where)
    for value in _flat_values(options):
        if isinstance(value, str) and any(t in value.upper() for t in FORBIDDEN_TYPES):
            raise ConfigError(f"{where}: {value!r} selects a pycolmap type that needs ONNX and would abort the "
                              "process (SIGABRT); learned features run through torch in l2m_sfm instead")
    return options


def _check_keys(options: Mapping[str, Any], reference: Mapping[str, Any], where: str) -> None:
    for key, value in options.items():
        if key not in reference:
            raise ConfigError(f"Unknown COLMAP option {where}.{key}; known keys: {', '.join(sorted(reference))}")
        if isinstance(value, Mapping) and isinstance(reference[key], Mapping):
            _check_keys(value, reference[key], f"{where}.{key}")


def _flat_values(options: Mapping[str, Any]) -> Iterator[Any]:
    for value in options.values():
        if isinstance(value, Mapping):
            yield from _flat_values(value)
        else:
            yield value


def deep_update(base: Mapping[str, Any], extra: Mapping[str, Any] | None) -> dict:
    """Nested dict merge (extra wins) without key checks; check the result with `check_options`."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for key, value in (extra or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


@contextlib.contextmanager
def colmap_logging(log_prefix: Path | None = None, verbose: bool = False) -> Iterator[None]:
    """Quiet COLMAP on the console (errors only) and write its full log to `<log_prefix><date-time.pid>`.

    glog always appends the date, time and pid to the file name, e.g. OUT/colmap.log.20260101-120000.42.
    """
    lg = pycolmap.logging
    saved = (lg.minloglevel, lg.stderrthreshold, lg.alsologtostderr, lg.logtostderr)
    try:
        lg.logtostderr = False
        lg.minloglevel = 0 if (verbose or log_prefix) else 2
        lg.stderrthreshold = 0 if verbose else 2
        lg.alsologtostderr = verbose
        if log_prefix is not None:
            Path(log_prefix).parent.mkdir(parents=True, exist_ok=True)
            lg.set_log_destination(lg.INFO, str(log_prefix))
            for level in (lg.WARNING, lg.ERROR):
                lg.set_log_destination(level, "")  # warnings and errors already go into the INFO file
        yield
    finally:
        if log_prefix is not None:
            lg.set_log_destination(lg.INFO, "")
        lg.minloglevel, lg.stderrthreshold, lg.alsologtostderr, lg.logtostderr = saved


# ---------------------------------------------------------------------------------------------------- cameras
def exif_focal_prior(path: Path, width: int, height: int) -> float | None:
    """Focal length in pixels from EXIF, as COLMAP derives it, or None when EXIF does not say.

    FocalLengthIn35mmFilm is relative to the 43.27 mm diagonal of a 35 mm frame (rotation-invariant);
    otherwise FocalLength (mm) x FocalPlaneXResolution (px per unit).
    """
    try:
        from PIL import Image

        with Image.open(path) as img:
            exif = img.getexif()
            sub = exif.get_ifd(0x8769)
    except Exception:  # noqa: BLE001 - no EXIF is a normal case
        return None
    f35 = _positive(sub.get(0xA405))
    if f35:
        return f35 / math.hypot(36.0, 24.0) * math.hypot(width, height)
    f_mm, xres = _positive(sub.get(0x920A)), _positive(sub.get(0xA20E))
    unit_mm = {2: 25.4, 3: 10.0, 4: 1.0, 5: 1e-3}.get(int(sub.get(0xA210, 2) or 2))
    if f_mm and xres and unit_mm:
        return f_mm * xres / unit_mm
    return None


def _positive(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _exif_camera_key(path: Path) -> tuple:
    try:
        from PIL import Image

        with Image.open(path) as img:
            exif = img.getexif()
            return (str(exif.get(271, "")).strip(), str(exif.get(272, "")).strip())
    except Exception:  # noqa: BLE001
        return ("", "")


def parse_intrinsics(text: str | Iterable[float] | None, camera_model: str) -> tuple[str, list[float]] | None:
    """'fx,fy,cx,cy' -> ('PINHOLE', [...]); a longer list is taken as params of `camera_model`; None -> None.

    Raises ConfigError for an unknown camera model (even without intrinsics) or values that do not fit it."""
    try:
        expected = len(pycolmap.Camera.create_from_model_name(1, camera_model, 1.0, 2, 2).params)
    except (ValueError, RuntimeError) as e:
        raise ConfigError(f"camera model {camera_model!r} is not a COLMAP camera model; use e.g. SIMPLE_RADIAL, "
                          "PINHOLE, OPENCV") from e
    if text is None or text == "":
        return None
    try:
        values = [float(v) for v in (text.replace(" ", ",").split(",") if isinstance(text, str) else text) if v != ""]
    except ValueError as e:
        raise ConfigError(f"--intrinsics {text!r}: expected comma-separated numbers 'fx,fy,cx,cy'") from e
    if not all(math.isfinite(v) for v in values) or (values and min(values[:2]) <= 0):
        raise ConfigError(f"--intrinsics {text!r}: focal lengths must be positive and all values finite")
    if len(values) == 4 and camera_model in ("SIMPLE_RADIAL", "PINHOLE"):
        return "PINHOLE", values
    if len(values) != expected:
        raise ConfigError(f"--intrinsics has {len(values)} numbers but camera model {camera_model} takes "
                          f"{expected}; give 'fx,fy,cx,cy' for a pinhole camera")
    return camera_model, values


def plan_cameras(image_dir: Path, names: list[str], sizes: Mapping[str, tuple[int, int]],
                 camera_mode: str = "auto", camera_model: str = "SIMPLE_RADIAL",
                 intrinsics: str | None = None, focal_factor: float = 1.2) -> tuple[list[pycolmap.Camera], dict]:
    """Cameras to create and the camera index of each image name (sizes (W, H) after EXIF orientation).

    Modes: auto (shared when size, make/model and EXIF focal agree), single, per-folder, per-image.
    Without an EXIF focal the focal guess is focal_factor * max(W, H) and is not marked as a prior.
    """
    if camera_mode not in CAMERA_MODES:
        raise ConfigError(f"camera mode {camera_mode!r}; choose one of {', '.join(CAMERA_MODES)}")
    known = parse_intrinsics(intrinsics, camera_model)
    groups: dict[tuple, list[str]] = defaultdict(list)
    priors: dict[str, float | None] = {}
    for name in names:
        w, h = sizes[name]
        priors[name] = exif_focal_prior(image_dir / name, w, h) if known is None else None
        if camera_mode == "single":
            key: tuple = ("single",)
        elif camera_mode == "per-folder":
            key = (Path(name).parent.as_posix(), w, h)
        elif camera_mode == "per-image":
            key = (name,)
        else:
            key = (w, h, *_exif_camera_key(image_dir / name), None if priors[name] is None
                   else round(priors[name], 1))
        groups[key].append(name)
    cameras, assignment = [], {}
    for idx, members in enumerate(groups.values()):
        w, h = sizes[members[0]]
        odd = [n for n in members if tuple(sizes[n]) != (w, h)]
        if odd:
            raise ConfigError(f"camera mode {camera_mode!r} puts images of different sizes in one camera "
                              f"({members[0]} is {w}x{h}, {odd[0]} is {sizes[odd[0]][0]}x{sizes[odd[0]][1]}); "
                              "use --camera-mode auto or per-image")
        if known is not None:
            model, params = known
            cam = pycolmap.Camera(model=model, width=w, height=h, params=params)
            cam.has_prior_focal_length = True
        else:
            prior = priors[members[0]]
            cam = pycolmap.Camera.create_from_model_name(idx + 1, camera_model, prior or focal_factor * max(w, h),
                                                         w, h)
            cam.has_prior_focal_length = prior is not None
        cameras.append(cam)
        for n in members:
            assignment[n] = idx
    return cameras, assignment


# --------------------------------------------------------------------------------------------------- database
def create_database(database_path: Path, image_dir: Path, names: list[str],
                    sizes: Mapping[str, tuple[int, int]], camera_mode: str = "auto",
                    camera_model: str = "SIMPLE_RADIAL", intrinsics: str | None = None) -> dict[str, int]:
    """Create a fresh database with cameras, trivial rigs, frames and images; returns name -> image_id."""
    database_path = Path(database_path)
    if database_path.exists():
        database_path.unlink()
    cameras, assignment = plan_cameras(Path(image_dir), names, sizes, camera_mode, camera_model, intrinsics)
    image_ids = {}
    with pycolmap.Database.open(str(database_path)) as db:
        camera_ids, rig_ids = [], []
        for cam in cameras:
            cam.camera_id = db.write_camera(cam)
            rig = pycolmap.Rig()
            rig.add_ref_sensor(cam.sensor_id)
            camera_ids.append(cam.camera_id)
            rig_ids.append(db.write_rig(rig))
        for name in names:
            idx = assignment[name]
            image = pycolmap.Image(name=name, camera_id=camera_ids[idx])
            image.image_id = db.write_image(image)
            frame = pycolmap.Frame()
            frame.rig_id = rig_ids[idx]
            frame.add_data_id(image.data_id)
            db.write_frame(frame)
            image_ids[name] = image.image_id
    return image_ids


def import_features(database_path: Path, image_ids: Mapping[str, int], features_path: Path) -> dict[str, int]:
    """Write each image's keypoints (hloc convention + 0.5 = COLMAP convention); returns name -> count."""
    from l2m_sfm.h5io import read_keypoints

    counts = {}
    with pycolmap.Database.open(str(database_path)) as db:
        for name, image_id in image_ids.items():
            kps = read_keypoints(features_path, name).astype(np.float64) + 0.5
            db.write_keypoints(image_id, kps.astype(np.float32))
            counts[name] = len(kps)
    return counts


def unique_pairs(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pairs without self-pairs and without (b, a) when (a, b) is present, order kept."""
    seen, out = set(), []
    for a, b in pairs:
        key = (a, b) if a < b else (b, a)
        if a != b and key not in seen:
            seen.add(key)
            out.append((a, b))
    return out


def iter_pair_matches(image_ids: Mapping[str, int], pairs: Iterable[tuple[str, str]], matches_path: Path,
                      min_match_score: float | None, stats: dict[str, int]) -> Iterator[tuple[str, str, np.ndarray]]:
    """Yield (name0, name1, uint32 (M,2) matches) of each listed pair with matches; counts absent pairs in
    stats["missing"]."""
    from l2m_sfm.h5io import H5LookupError, read_matches

    for a, b in unique_pairs(pairs):
        if a not in image_ids or b not in image_ids:
            continue
        try:
            matches, scores = read_matches(matches_path, a, b)
        except H5LookupError:
            stats["missing"] = stats.get("missing", 0) + 1
            continue
        if min_match_score is not None:
            matches = matches[scores > min_match_score]
        if len(matches):
            yield a, b, np.ascontiguousarray(matches, dtype=np.uint32)


def import_matches(database_path: Path, image_ids: Mapping[str, int], pairs: Iterable[tuple[str, str]],
                   matches_path: Path, min_match_score: float | None = None) -> dict[str, int]:
    """Write the matches of every listed pair; returns counts {pairs, matches, missing}."""
    stats = {"pairs": 0, "matches": 0, "missing": 0}
    with pycolmap.Database.open(str(database_path)) as db:
        for a, b, matches in iter_pair_matches(image_ids, pairs, matches_path, min_match_score, stats):
            db.write_matches(image_ids[a], image_ids[b], matches)
            stats["pairs"] += 1
            stats["matches"] += len(matches)
    return stats


def verify_matches(database_path: Path, options: Mapping[str, Any] | None = None) -> int:
    """COLMAP geometric verification of every matched pair of the database; returns the number verified.

    The database holds matches of the listed pairs only, so no pair file is needed: COLMAP's pair-file reader
    splits lines on spaces and would lose images whose names contain them. COLMAP writes configs itself
    (CALIBRATED with a focal prior, else UNCALIBRATED).
    """
    opts = check_options(deep_update(default_verification, options), pycolmap.TwoViewGeometryOptions,
                         "verification")
    pycolmap.geometric_verification(str(database_path), two_view_geometry_options=pycolmap.TwoViewGeometryOptions(opts))
    return verified_pair_stats(database_path)["verified_pairs"]


def without_focal_priors(database_path: Path, out_path: Path, options: Mapping[str, Any] | None = None,
                         focal_factor: float = 1.2) -> int:
    """Copy a database with its EXIF focal priors dropped and its pairs verified again; returns cameras changed.

    A camera with a focal prior gets focal_factor x max(W, H) and no prior (COLMAP's guess without EXIF),
    the two-view geometries are recomputed (with a prior COLMAP verifies pairs as CALIBRATED and trusts the
    prior). Returns 0 and writes nothing when no camera had a prior. `out_path` appears only when complete.
    """
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.name + ".tmp")
    shutil.copyfile(database_path, tmp)
    changed = 0
    with pycolmap.Database.open(str(tmp)) as db:
        for cam in db.read_all_cameras():
            if cam.has_prior_focal_length:
                params = cam.params.copy()
                params[list(cam.focal_length_idxs())] = focal_factor * max(cam.width, cam.height)
                cam.params, cam.has_prior_focal_length = params, False
                db.update_camera(cam)
                changed += 1
        if changed:
            db.clear_two_view_geometries()
    if not changed:
        tmp.unlink()
        return 0
    verify_matches(tmp, options)
    os.replace(tmp, out_path)
    return changed


def verified_pair_stats(database_path: Path) -> dict[str, Any]:
    """Diagnostics: number of matched and verified pairs, inliers per pair, TVG configs."""
    with pycolmap.Database.open(str(database_path)) as db:
        pair_ids, tvgs = db.read_two_view_geometries()
        inliers = [len(t.inlier_matches) for t in tvgs]
        configs = defaultdict(int)
        for t in tvgs:
            configs[str(t.config).split(".")[-1]] += 1
        return {
            "matched_pairs": int(db.num_matched_image_pairs()),
            "verified_pairs": int(sum(n > 0 for n in inliers)),
            "inliers_per_pair_median": float(np.median(inliers)) if inliers else 0.0,
            "tvg_configs": dict(configs),
        }


def images_per_camera(database_path: Path) -> dict[int, int]:
    """Number of images of each camera id in a database."""
    with pycolmap.Database.open(str(database_path)) as db:
        counts: dict[int, int] = defaultdict(int)
        for image in db.read_all_images():
            counts[image.camera_id] += 1
        return dict(counts)


def focal_priors(database_path: Path) -> dict[int, float]:
    """Camera id -> focal length (px) of the cameras of a database that have a focal prior."""
    with pycolmap.Database.open(str(database_path)) as db:
        return {c.camera_id: c.mean_focal_length() for c in db.read_all_cameras() if c.has_prior_focal_length}


# ---------------------------------------------------------------------------------------------------- mapping
def model_rank(reconstruction: pycolmap.Reconstruction) -> tuple[int, int]:
    """Sort key of candidate models: more registered images first, then more 3D points."""
    return reconstruction.num_reg_images(), reconstruction.num_points3D()


def refine_options(mapper: str, fixed_intrinsics: bool, principal_point: bool) -> dict[str, Any]:
    """Bundle-adjustment flags of an incremental or global mapping run: known intrinsics refine nothing."""
    refine = {"focal_length": not fixed_intrinsics, "principal_point": principal_point and not fixed_intrinsics,
              "extra_params": not fixed_intrinsics}
    if mapper == "incremental":
        return {f"ba_refine_{k}": v for k, v in refine.items()}
    return {"mapper": {"bundle_adjustment": {f"refine_{k}": v for k, v in refine.items()}}}


def run_mapping(database_path: Path, image_dir: Path, work_dir: Path, mapper: str = "incremental",
                options: Mapping[str, Any] | None = None,
                progress: Any | None = None) -> tuple[pycolmap.Reconstruction | None, list[dict]]:
    """Map with COLMAP (incremental or global); returns the model with most registered images and all sizes."""
    work_dir = Path(work_dir)
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    if mapper == "incremental":
        opts = check_options(deep_update(default_mapper, options), pycolmap.IncrementalPipelineOptions, "mapper")
        kwargs: dict[str, Any] = {}
        if progress is not None:
            kwargs["next_image_callback"] = lambda: progress.update(1)
        models = pycolmap.incremental_mapping(str(database_path), str(image_dir), str(work_dir),
                                              pycolmap.IncrementalPipelineOptions(opts), **kwargs)
    elif mapper == "global":
        opts = check_options(deep_update({"num_threads": default_mapper["num_threads"]}, options),
                             pycolmap.GlobalPipelineOptions, "mapper")
        models = pycolmap.global_mapping(str(database_path), str(image_dir), str(work_dir),
                                         pycolmap.GlobalPipelineOptions(opts))
    else:
        raise ConfigError(f"mapper {mapper!r}; choose incremental or global")
    summary = [{"model": int(k), "registered": int(r.num_reg_images()), "points": int(r.num_points3D())}
               for k, r in models.items()]
    if not models:
        return None, summary
    best = max(models.values(), key=model_rank)
    return best, summary


def remove_bad_points(reconstruction: pycolmap.Reconstruction, max_error: float = 4.0,
                      min_tri_angle: float = 1.5) -> int:
    """Recompute every point's reprojection error and drop observations above `max_error` px and points
    triangulated under `min_tri_angle` degrees (COLMAP's mapper filter defaults), in place; returns how many
    observations went. Run after the final bundle adjustment (refine_principal_points): seen on opensfm_lund,
    it left 203 points with observations behind a camera (errors ~1e154 px)."""
    reconstruction.update_point_3d_errors()
    return int(pycolmap.ObservationManager(reconstruction).filter_all_points3D(max_error, min_tri_angle))


def refine_principal_points(reconstruction: pycolmap.Reconstruction, min_images: int = 5,
                            max_shift: float = 0.05) -> bool:
    """Final bundle adjustment that also refines the principal points, in place; returns True if applied.

    Only when every camera has >= min_images registered images; undone if a principal point moves by more
    than max_shift of the image size (an ill-posed problem rather than a correction).
    """
    counts: dict[int, int] = defaultdict(int)
    for image_id in reconstruction.reg_image_ids():
        counts[reconstruction.images[image_id].camera_id] += 1
    if not counts or min(counts.values()) < min_images:
        return False
    backup = pycolmap.Reconstruction(reconstruction)
    opts = pycolmap.BundleAdjustmentOptions(refine_principal_point=True, print_summary=False)
    pycolmap.bundle_adjustment(reconstruction, opts)
    for cam_id in counts:
        cam, old = reconstruction.cameras[cam_id], backup.cameras[cam_id]
        shift = np.abs(np.array([cam.principal_point_x - old.principal_point_x,
                                 cam.principal_point_y - old.principal_point_y]))
        if shift[0] > max_shift * cam.width or shift[1] > max_shift * cam.height:
            for cid, c in backup.cameras.items():  # restore everything from the backup
                reconstruction.cameras[cid].params = c.params
            for iid in backup.reg_image_ids():
                frame = reconstruction.frames[reconstruction.images[iid].frame_id]
                frame.rig_from_world = backup.frames[backup.images[iid].frame_id].rig_from_world
            for pid, pt in backup.points3D.items():
                reconstruction.points3D[pid].xyz = pt.xyz
            return False
    return True


def write_model(reconstruction: pycolmap.Reconstruction, sfm_dir: Path) -> Path:
    """Write binary files into sfm_dir and text files into sfm_dir/text, replacing both atomically."""
    sfm_dir = Path(sfm_dir)
    tmp = sfm_dir.with_name(sfm_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "text").mkdir(parents=True)
    reconstruction.write(str(tmp))
    reconstruction.write_text(str(tmp / "text"))
    if sfm_dir.exists():
        shutil.rmtree(sfm_dir)
    os.replace(tmp, sfm_dir)
    return sfm_dir


def model_stats(reconstruction: pycolmap.Reconstruction) -> dict[str, Any]:
    """Registered images, points, mean track length and mean reprojection error (px) of a model."""
    return {
        "registered": int(reconstruction.num_reg_images()),
        "points3D": int(reconstruction.num_points3D()),
        "mean_track_length": float(reconstruction.compute_mean_track_length()),
        "mean_reprojection_error_px": float(reconstruction.compute_mean_reprojection_error()),
        "registered_names": sorted(reconstruction.images[i].name for i in reconstruction.reg_image_ids()),
    }


# -------------------------------------------------------------------------------------------------------- CLI
def main(image_dir: Path, pairs_path: Path, features_path: Path, matches_path: Path, output: Path,
         mapper: str = "incremental", camera_mode: str = "auto", camera_model: str = "SIMPLE_RADIAL",
         intrinsics: str | None = None) -> Path | None:
    """Database, verification and mapping of the pairs of `pairs_path`; returns OUT/sfm, or None without a model.

    Known `intrinsics` are held fixed by bundle adjustment."""
    from l2m_sfm.h5io import require_names
    from l2m.images import image_size
    from l2m_sfm.pairs import parse_pairs

    pairs = parse_pairs(pairs_path)
    names = sorted({n for p in pairs for n in p})
    require_names(features_path, names)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    database = output / "database.db"
    sizes = {n: image_size(Path(image_dir) / n) for n in names}
    ids = create_database(database, image_dir, names, sizes, camera_mode, camera_model, intrinsics)
    import_features(database, ids, features_path)
    import_matches(database, ids, pairs, matches_path)
    verify_matches(database)
    options = refine_options(mapper, fixed_intrinsics=intrinsics is not None, principal_point=False)
    model, _ = run_mapping(database, image_dir, output / "sfm.models", mapper, options)
    shutil.rmtree(output / "sfm.models", ignore_errors=True)
    if model is None or model.num_reg_images() < 2:
        return None
    return write_model(model, output / "sfm")


def cli(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from l2m_sfm.h5io import H5LookupError
    from l2m.images import ImageReadError
    from l2m_sfm.pairs import PairFileError

    parser = argparse.ArgumentParser(description="COLMAP database, geometric verification and mapping from the "
                                                 "HDF5 files of a matching stage (hloc layout).")
    parser.add_argument("--images", type=Path, required=True, help="image folder the names are relative to")
    parser.add_argument("--pairs", type=Path, required=True, help="pair file of the matching stage")
    parser.add_argument("--features", type=Path, required=True, help="features.h5 (keypoints)")
    parser.add_argument("--matches", type=Path, required=True, help="matches.h5")
    parser.add_argument("--output", type=Path, required=True, help="folder for database.db and sfm/")
    parser.add_argument("--mapper", choices=("incremental", "global"), default="incremental")
    parser.add_argument("--camera-mode", choices=CAMERA_MODES, default="auto")
    parser.add_argument("--camera-model", default="SIMPLE_RADIAL", help="COLMAP camera model")
    parser.add_argument("--intrinsics", help="known intrinsics 'fx,fy,cx,cy' (pixels), held fixed")
    args = parser.parse_args(argv)
    try:
        parse_intrinsics(args.intrinsics, args.camera_model)
        for path in (args.features, args.matches):
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist; run l2m_sfm.match_features or match_dense first")
        with colmap_logging(args.output / "colmap.log."):
            sfm = main(args.images, args.pairs, args.features, args.matches, args.output, args.mapper,
                       args.camera_mode, args.camera_model, args.intrinsics)
    except (ConfigError, FileNotFoundError, PairFileError, H5LookupError, ImageReadError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if sfm is None:
        print(f"error: no model: no two images could be registered together; see {args.output}/colmap.log.*",
              file=sys.stderr)
        return 2
    model = pycolmap.Reconstruction(str(sfm))
    print(f"Registered {model.num_reg_images()} images, {model.num_points3D()} points -> {sfm}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
