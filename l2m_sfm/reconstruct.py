"""Images in, COLMAP model out: list images -> pairs -> matching -> database -> verification -> mapping.

    python -m l2m_sfm.reconstruct --images DIR [--output OUT] [--pairs exhaustive|sequential:N|retrieval:K|file:PATH]
        [--matcher NAME] [--mapper auto|incremental|global] [--camera-mode auto|single|per-folder|per-image]
        [--camera-model SIMPLE_RADIAL] [--intrinsics fx,fy,cx,cy] [--device cpu|cuda] [--overwrite] [key=value ...]
    torchrun --nproc_per_node N -m l2m_sfm.reconstruct ...    # extraction and matching sharded (l2m_sfm.shards)

Outputs in OUT (default outputs/<name of DIR>): pairs.txt, features.h5, matches.h5, database.db,
sfm/ (binary model) + sfm/text/ (text model), report.json, report.html, config.json, matches/*.jpg, colmap.log.*.
Resume: matching skips pairs already in matches.h5; the database is rebuilt from the HDF5 files unless a
complete database.db is newer than them; mapping is skipped when sfm/ is newer than the database.
--overwrite redoes everything; without it, an OUT whose config.json has other pairs, matcher (name, conf, or
identity: weight file hashes) or matching options is an error. A run that reconstructs nothing exits with
status 2 and leaves its diagnostics (verified pairs, keypoints per image) in report.json.
One run at a time holds OUT (l2m_sfm.run_folder: a lock; a run that fails before computing anything removes the
OUT it created). Every error reaches the command line as one `error:` line, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

from l2m.config import ConfigError, merge_conf, parse_overrides, write_conf
from l2m_sfm import colmap
from l2m_sfm import report as report_mod
from l2m_sfm import run_folder
from l2m_sfm import shards as shards_mod
from l2m_sfm.shards import Shards

# Best baseline on ../shared/data/strecha (see benchmarks/sfm_smoke.py and the README); replaced by the
# shipped L2M variant once it is trained.
DEFAULT_MATCHER = "sift"
EXHAUSTIVE_MAX_IMAGES = 30  # above this, the default pairing is retrieval:20
# above this, mapper.type=auto maps globally (GLOMAP in COLMAP 4): incremental mapping repeats bundle
# adjustment as images are added and grows faster than linearly (docs/scaling.md, benchmarks/scaling.py)
GLOBAL_MAPPING_ABOVE = 1000
PP_MIN_IMAGES = 5

default_conf: dict[str, Any] = {
    "pairs": None,  # 'exhaustive' | 'sequential:N' | 'retrieval:K' | 'file:PATH'; None: exhaustive up to 30 images
    "matcher": {"name": None, "conf": {}},  # None: DEFAULT_MATCHER; conf goes to the matcher factory
    # options of l2m_sfm.match_features / l2m_sfm.match_dense (their own conf keys); with a dense matcher,
    # anchors=sift|aliked|disk|xfeat (combine=union by default, or none; ...) selects l2m_sfm.match_anchored instead
    "matching": {},
    # refine_principal_point: "auto" = final BA refines it when every camera has >= PP_MIN_IMAGES registered
    # images (a principal point ~8 px off the image centre costs ~0.4 deg of rotation on Strecha)
    "camera": {"mode": "auto", "model": "SIMPLE_RADIAL", "intrinsics": None, "refine_principal_point": "auto"},
    "min_match_score": None,
    "verification": {},  # pycolmap.TwoViewGeometryOptions keys (nested dicts)
    # options: Incremental/GlobalPipelineOptions keys of `type`. When `type` registers fewer than
    # fallback_below x the images, the `fallback` mapper (None: off) also runs and the model with more
    # registered images is kept: incremental mapping finds no good initial pair on forward-moving sequences
    # (opensfm_lund: 2/29 incremental, 29/29 global). Before the fallback, `type` runs again with other
    # random seeds, up to `attempts` runs in all: COLMAP's initial-pair choice is random and mapping costs
    # seconds next to matching (sacre_coeur with l2m-tiny: 2, 4, 5, 10, 10 of 10 images over five seeds).
    # seed: COLMAP random_seed of the first run (run k: seed + k; None: COLMAP's time-derived seed).
    # deterministic: map on one thread unless options.num_threads says otherwise; COLMAP 4.2.1 repeats a run
    # only with a seed AND one thread (Herz-Jesus-P8, SIFT: seed 0 on 2 threads gave 3974, 3974, 3972 points
    # and camera centres 0.03 apart over three runs; on 1 thread three identical models).
    # drop_focal_priors: when mapping (attempts and fallback included) still registers fewer than
    # fallback_below x the images and EXIF gave focal priors, the pairs are verified again without them and
    # mapped again; that model is kept if it ranks higher and every focal is within FOCAL_PRIOR_RANGE x its
    # prior. opensfm_lund's EXIF (35 mm equivalent 35 mm) says 1035 px where bundle adjustment finds
    # 690-760 px: with the prior SIFT incremental mapping registered 3, 3, 2 of 29 (seeds 0-2), without 29,
    # 29, 27 of 29.
    # type: 'auto' = incremental up to GLOBAL_MAPPING_ABOVE images, global above (recorded in report.json)
    "mapper": {"type": "auto", "options": {}, "attempts": 3, "fallback": "global", "fallback_below": 1.0,
               "seed": 0, "deterministic": True, "drop_focal_priors": True},
    "device": "cpu",
    "num_match_images": 4,  # pictures of matches written to OUT/matches/
    "verbose": False,  # COLMAP log on the console too
}


MIN_POINTS_PER_IMAGE = 20  # a fallback model must have at least this many 3D points per registered image
NOPRIOR_DB = "database.noprior.db"  # the database verified again without EXIF focal priors
FOCAL_PRIOR_RANGE = (0.5, 2.0)  # a model mapped without EXIF focal priors must stay within this x each prior


class ReconstructionError(RuntimeError):
    """The pipeline ran but produced no model; the message says why and what to try."""


def resolve_conf(conf: dict[str, Any] | None, num_images: int) -> dict[str, Any]:
    """Merge user conf into the defaults and fill the automatic choices (pairs, matcher)."""
    conf = merge_conf(default_conf, conf, "reconstruct")
    if conf["pairs"] is None:
        conf["pairs"] = "exhaustive" if num_images <= EXHAUSTIVE_MAX_IMAGES else "retrieval:20"
    if conf["matcher"]["name"] is None:
        conf["matcher"]["name"] = DEFAULT_MATCHER
    if conf["mapper"]["type"] not in ("auto", "incremental", "global"):
        raise ConfigError(f"mapper {conf['mapper']['type']!r}: use auto, incremental or global")
    conf["mapper"]["type"] = mapper_choice(conf["mapper"]["type"], num_images)["type"]
    if conf["camera"]["mode"] not in colmap.CAMERA_MODES:
        raise ConfigError(f"camera mode {conf['camera']['mode']!r}: use one of {', '.join(colmap.CAMERA_MODES)}")
    colmap.parse_intrinsics(conf["camera"]["intrinsics"], conf["camera"]["model"])  # bad values: fail before matching
    return conf


def mapper_choice(requested: str, num_images: int) -> dict[str, Any]:
    """Which mapper runs and why: {"type", "requested", "reason"} ('auto' switches above GLOBAL_MAPPING_ABOVE)."""
    if requested != "auto":
        return {"type": requested, "requested": requested, "reason": "requested"}
    big = num_images > GLOBAL_MAPPING_ABOVE
    return {"type": "global" if big else "incremental", "requested": "auto",
            "reason": f"{num_images} images {'>' if big else '<='} {GLOBAL_MAPPING_ABOVE} (GLOBAL_MAPPING_ABOVE)"}


class StageTimer:
    """Seconds per named stage, printed as each stage ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str, quiet: bool = False) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        if not quiet:
            print(f"[{name}] {self.seconds[name]:.1f} s", flush=True)


def _same_run(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys whose change makes earlier matches unusable (matcher: name, conf and identity).

    A matcher entry without "identity" (config.json of an earlier version) counts as identity {}.
    """
    def entry(conf: dict[str, Any], key: str) -> str:
        value = conf.get(key)
        if key == "matcher" and isinstance(value, dict):
            value = {"identity": {}, **value}
        return json.dumps(value, sort_keys=True)

    return [k for k in ("pairs", "matcher", "matching") if entry(old, k) != entry(new, k)]


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


def run_matching(conf: dict[str, Any], image_dir: Path, names: list[str], pairs_path: Path,
                 features_path: Path, matches_path: Path, overwrite: bool, shards: Shards | None = None
                 ) -> dict[str, Any]:
    """Match every pair with the configured matcher (dense or sparse path); resumes per pair.

    Under torchrun (`shards`), every rank matches its block on its own device; rank 0 merges (the anchored
    path is not sharded yet: it runs on rank 0 alone)."""
    from l2m_sfm.matchers import get_matcher

    sh = shards or Shards()
    matcher = get_matcher(conf["matcher"]["name"], conf["matcher"]["conf"], sh.device(conf["device"]))
    anchored = bool(conf["matching"].get("anchors") or conf["matching"].get("combine"))
    if anchored and not getattr(matcher, "dense", False):
        raise ConfigError(f"matching.anchors / matching.combine apply to dense matchers, not {matcher.name!r}")
    if anchored and not sh.is_main:
        stats = {}
    elif anchored:
        from l2m_sfm import match_anchored

        stats = match_anchored.main(conf["matching"], matcher, image_dir, names, pairs_path, features_path,
                                    matches_path, overwrite=overwrite, progress=True)
    elif getattr(matcher, "dense", False):
        from l2m_sfm import match_dense

        stats = match_dense.main(conf["matching"], matcher, image_dir, names, pairs_path, features_path,
                                 matches_path, overwrite=overwrite, progress=sh.is_main, shards=sh)
    else:
        from l2m_sfm import match_features

        stats = match_features.main(dict(conf["matching"], matcher=matcher), image_dir, names, pairs_path,
                                    features_path, matches_path, overwrite=overwrite, progress=sh.is_main,
                                    shards=sh)
    stats = dict(stats or {})
    stats["dense"] = bool(getattr(matcher, "dense", False))
    return stats


def build_database(conf: dict[str, Any], image_dir: Path, names: list[str], pairs: list[tuple[str, str]],
                   pairs_path: Path, features_path: Path, matches_path: Path, database: Path
                   ) -> dict[str, Any]:
    """Fresh database from the HDF5 files (written to a temp name, renamed when verified)."""
    from l2m.images import image_size

    from tqdm import tqdm

    tmp = database.with_name(database.name + ".tmp")
    cam = conf["camera"]
    with tqdm(total=4, desc="database", unit="step") as bar:
        bar.set_postfix_str("cameras")
        sizes = {n: image_size(image_dir / n) for n in names}
        ids = colmap.create_database(tmp, image_dir, names, sizes, cam["mode"], cam["model"], cam["intrinsics"])
        bar.update()
        bar.set_postfix_str("keypoints")
        keypoints = colmap.import_features(tmp, ids, features_path)
        bar.update()
        bar.set_postfix_str("matches")
        match_stats = colmap.import_matches(tmp, ids, pairs, matches_path, conf["min_match_score"])
        bar.update()
        bar.set_postfix_str("geometric verification")
        colmap.verify_matches(tmp, conf["verification"])
        stats = colmap.verified_pair_stats(tmp)
        bar.update()
    os.replace(tmp, database)
    return {"keypoints_per_image": keypoints, "imported_matches": match_stats, **stats}


def main(conf: dict[str, Any] | None, image_dir: Path, output: Path, overwrite: bool = False) -> Path:
    """Reconstruct the images of `image_dir` into `output`; returns OUT/sfm. Raises ReconstructionError."""
    from l2m.images import list_images
    from l2m_sfm.matchers import matcher_identity

    image_dir, output = Path(image_dir), Path(output)
    timer = StageTimer()
    with timer("list images"):
        names, skipped = _outside(output, image_dir, *list_images(image_dir))
    for name, reason in skipped:
        print(f"  skipped {name}: {reason}", file=sys.stderr)
    if len(names) < 2:
        detail = f" ({len(skipped)} files skipped, see above)" if skipped else ""
        raise ReconstructionError(f"{image_dir} holds {len(names)} readable image(s){detail}; SfM needs at least "
                                  "2 overlapping photos (jpg, png, tif, webp, bmp)")
    choice = mapper_choice(merge_conf(default_conf, conf, "reconstruct")["mapper"]["type"], len(names))
    conf = resolve_conf(conf, len(names))
    sh = shards_mod.setup(str(conf["device"]))  # torchrun: process group, this rank's device / threads
    # weight file hashes etc. (not a matcher conf key): a retrained checkpoint under the same name is a change
    conf["matcher"]["identity"] = matcher_identity(conf["matcher"]["name"], conf["matcher"]["conf"])
    with run_folder.claimed(output) if sh.is_main else nullcontext(output):  # rank 0 holds the folder's lock
        return _main_claimed(conf, image_dir, output, names, skipped, timer, overwrite, sh, choice)


def _outside(output: Path, image_dir: Path, names: list[str], skipped: list[tuple[str, str]]
             ) -> tuple[list[str], list[tuple[str, str]]]:
    """Drop the files of an output folder placed inside the image folder (its match pictures are not photos)."""
    try:
        inner = output.resolve().relative_to(image_dir.resolve()).as_posix() + "/"
    except ValueError:
        return names, skipped
    return [n for n in names if not n.startswith(inner)], [(n, r) for n, r in skipped if not n.startswith(inner)]


def _main_claimed(conf: dict[str, Any], image_dir: Path, output: Path, names: list[str],
                  skipped: list[tuple[str, str]], timer: StageTimer, overwrite: bool, sh: Shards | None = None,
                  choice: dict[str, Any] | None = None) -> Path:
    """`main` once the configuration is valid and this process holds the output folder: the list of stages.

    Each stage decides alone whether its output is already there (the hloc habit): pairs are regenerated and
    compared, matching resumes per image and pair, the database and the model are reused when their inputs and
    settings are unchanged (keys recorded in report.json)."""
    sh = sh or Shards()
    paths = RunPaths(output)
    sh.barrier()  # rank 0 has created and locked the folder
    prepare_output(conf, paths, overwrite, sh)
    report = start_report(conf, image_dir, names, skipped, timer)
    report["processes"] = {"world_size": sh.world, "device": conf["device"]}
    report["mapper_choice"] = choice or mapper_choice(conf["mapper"]["type"], len(names))
    with timer("pairs"):
        pairs, pairs_unchanged = pairs_stage(conf, image_dir, names, paths, sh)
    report["pairs"] = {"method": conf["pairs"], "num_pairs": len(pairs), "unchanged": pairs_unchanged}
    with timer("matching"):
        report["matching"] = run_matching(conf, image_dir, names, paths.pairs, paths.features, paths.matches,
                                          overwrite, sh)
    if not sh.is_main:  # rank 0 alone verifies and maps
        print(f"[rank {sh.rank}/{sh.world}] matching shard done in {timer.seconds['matching']:.1f} s", flush=True)
        return paths.sfm
    previous = _read_json(paths.report)
    inputs_unchanged = pairs_unchanged and _nothing_matched(report["matching"])
    with colmap.colmap_logging(output / "colmap.log.", conf["verbose"]):
        with timer("database + verification"):
            report.update(database_stage(conf, image_dir, names, pairs, paths, previous, inputs_unchanged))
        report_mod.write_report(report, output)  # interim: a run killed while mapping reuses the verified database
        with timer("mapping"):
            model, mapping = mapping_stage(conf, image_dir, len(names), paths, previous,
                                           reuse=not report["database"]["rebuilt"])
        report.update(mapping)
    if model is None or model.num_reg_images() < 2:
        fail(report, paths)
    with timer("write model"):
        report.update(model_stage(conf, image_dir, names, pairs, paths, model,
                                  written=report.get("mapping_reused", False)))
    report_mod.write_report(report, output)
    m = report["model"]
    print(f"Registered {m['registered']}/{len(names)} images, {m['points3D']} points, mean track length "
          f"{m['mean_track_length']:.2f}, mean reprojection error {m['mean_reprojection_error_px']:.3f} px -> "
          f"{paths.sfm}")
    return paths.sfm


class RunPaths:
    """The files of an output folder (database.db only exists once complete: written as database.db.tmp, renamed
    when verified)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pairs, self.features, self.matches = root / "pairs.txt", root / "features.h5", root / "matches.h5"
        self.database, self.sfm, self.report = root / "database.db", root / "sfm", root / "report.json"


def prepare_output(conf: dict[str, Any], paths: RunPaths, overwrite: bool, sh: Shards | None = None) -> None:
    """--overwrite clears earlier results; otherwise results of a different pairs/matcher/matching are refused.
    Then the resolved configuration is written (by rank 0 under torchrun, after every rank has checked it)."""
    sh = sh or Shards()
    if overwrite and paths.root.exists() and sh.is_main:
        for item in ("pairs.txt", "features.h5", "matches.h5", "database.db", NOPRIOR_DB, "sfm", "report.json",
                     "matches"):
            p = paths.root / item
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    old_conf_path = paths.root / "config.json"
    if old_conf_path.exists() and not overwrite and run_folder.has_results(paths.root):
        changed = _same_run(json.loads(old_conf_path.read_text()), conf)
        if changed:
            raise ConfigError(f"{paths.root} holds results made with a different {', '.join(changed)}; "
                              "use --overwrite to redo them or choose another --output")
    sh.barrier()  # every rank has read config.json
    if sh.is_main:
        write_conf(conf, old_conf_path)


def start_report(conf: dict[str, Any], image_dir: Path, names: list[str], skipped: list[tuple[str, str]],
                 timer: StageTimer) -> dict[str, Any]:
    """The report's first entries (images, config, versions, the live stage timings); prints the listing line."""
    from l2m_sfm.images import format_listing

    print(format_listing(image_dir, [], skipped).splitlines()[0].replace("0 images", f"{len(names)} images"))
    spaced = [n for n in names if any(c.isspace() for c in n)]
    if spaced:  # COLMAP's text-model reader (and most others) cut names at the first space
        print(f"  note: {len(spaced)} image names contain spaces (e.g. {spaced[0]!r}); the binary model OUT/sfm keeps "
              "them whole, readers of the text model sfm/text may cut them at the space")
    return {
        "images": {"root": str(image_dir), "found": len(names), "skipped": [
            {"name": n, "reason": r} for n, r in skipped]},
        "config": conf, "versions": report_mod.package_versions(), "seconds": timer.seconds,
    }


def pairs_stage(conf: dict[str, Any], image_dir: Path, names: list[str], paths: RunPaths,
                sh: Shards | None = None) -> tuple[list[tuple[str, str]], bool]:
    """(pairs, unchanged since the last run). Regenerated every run (cheap; retrieval caches its descriptors), so
    added images get paired too. Under torchrun the ranks share the retrieval descriptors; rank 0 writes the pairs."""
    from l2m_sfm import pairs as pairs_mod

    sh = sh or Shards()
    before = paths.pairs.read_text() if paths.pairs.exists() else None
    sh.barrier()
    if sh.distributed:  # retrieval descriptors: each rank its block
        pairs_mod.describe_sharded(pairs_mod.conf_from_string(conf["pairs"]), names, paths.pairs, image_dir, sh)
    if sh.is_main:
        pairs_mod.main(pairs_mod.conf_from_string(conf["pairs"]), names, paths.pairs, image_dir=image_dir)
    sh.barrier()
    return pairs_mod.parse_pairs(paths.pairs, names), before == paths.pairs.read_text()


def _nothing_matched(stats: dict[str, Any]) -> bool:
    """True when the matching stage computed nothing new (every image and pair reused, no new quantisation, matches
    not rewritten)."""
    return stats.get("pairs_computed", 1) == 0 and stats.get("images_extracted", 0) == 0 \
        and not stats.get("quantized", False) and not stats.get("matches_rewritten", False)


def database_stage(conf: dict[str, Any], image_dir: Path, names: list[str], pairs: list[tuple[str, str]],
                   paths: RunPaths, previous: dict[str, Any], inputs_unchanged: bool) -> dict[str, Any]:
    """{"database": stats (with "rebuilt"), "database_key"}: the verified database of the last run is reused when
    the matches are unchanged and the camera / verification settings too; otherwise it is built again."""
    key = _key(conf["camera"], conf["min_match_score"], conf["verification"])
    reuse = inputs_unchanged and paths.database.exists() and previous.get("database_key") == key \
        and bool(previous.get("database"))
    if reuse:
        stats = dict(previous["database"])
    else:
        stats = build_database(conf, image_dir, names, pairs, paths.pairs, paths.features, paths.matches,
                               paths.database)
    stats["rebuilt"] = not reuse
    return {"database": stats, "database_key": key}


def mapping_stage(conf: dict[str, Any], image_dir: Path, num_images: int, paths: RunPaths,
                  previous: dict[str, Any], reuse: bool):
    """(model or None, report entries): the model of the last run is reused when the database was and the mapper
    settings are unchanged; otherwise mapping (with its seeds, fallback and focal-prior retry) runs."""
    key = _key(conf["mapper"])
    if reuse and (paths.sfm / "images.bin").exists() and previous.get("mapping_key") == key:
        import pycolmap

        return pycolmap.Reconstruction(str(paths.sfm)), {"mapping_reused": True, "mapping_key": key,
                                                         "models": previous.get("models", [])}
    model, models = _map_with_priors_fallback(conf, paths.database, paths.pairs, image_dir, paths.root,
                                              num_images)
    return model, {"mapping_key": key, "models": models}


def fail(report: dict[str, Any], paths: RunPaths) -> None:
    """No usable model: record why in report.json, remove any model of an earlier run, raise ReconstructionError."""
    report["model"] = None
    report["error"] = report_mod.failure_message(report)
    shutil.rmtree(paths.sfm, ignore_errors=True)  # never leave a model of an earlier run looking current
    report_mod.write_report(report, paths.root)
    raise ReconstructionError(report["error"])


def model_stage(conf: dict[str, Any], image_dir: Path, names: list[str], pairs: list[tuple[str, str]],
                paths: RunPaths, model, written: bool) -> dict[str, Any]:
    """Colour and write the model (unless it is the reused one on disk); its statistics and match pictures."""
    if not written:
        report_mod.color_points(model, image_dir)
        colmap.write_model(model, paths.sfm)
    stats = colmap.model_stats(model)
    stats["unregistered_names"] = sorted(set(names) - set(stats["registered_names"]))
    pictures = report_mod.draw_match_pictures(image_dir, pairs, paths.features, paths.matches,
                                              paths.root / "matches", conf["num_match_images"])
    return {"model": stats, "match_pictures": pictures}


def _map_with_priors_fallback(conf: dict[str, Any], database: Path, pairs_path: Path, image_dir: Path,
                              output: Path, num_images: int):
    """`_map`, then (mapper.drop_focal_priors) the same again on a copy of the database without EXIF focal
    priors when the first model is short of mapper.fallback_below x the images. Model summaries say which
    database they came from ("focal_priors") and which model was kept."""
    model, models = _map(conf, database, image_dir, output, num_images)
    registered = model.num_reg_images() if model is not None else 0
    for summary in models:
        summary["focal_priors"] = True
    if (not conf["mapper"]["drop_focal_priors"] or conf["camera"]["intrinsics"]
            or registered >= conf["mapper"]["fallback_below"] * num_images):
        return model, models
    priors = colmap.focal_priors(database)
    noprior_db = output / NOPRIOR_DB
    noprior_db.unlink(missing_ok=True)
    if not priors or not colmap.without_focal_priors(database, noprior_db, conf["verification"]):
        return model, models
    print(f"[mapping] registered {registered}/{num_images} images; EXIF focal priors "
          f"({', '.join(f'{f:.0f}' for f in priors.values())} px) dropped, pairs verified again and mapped again")
    other, other_models = _map(conf, noprior_db, image_dir, output, num_images)
    ratios = {} if other is None else {
        cid: other.cameras[cid].mean_focal_length() / prior for cid, prior in priors.items() if cid in other.cameras}
    plausible = all(FOCAL_PRIOR_RANGE[0] <= r <= FOCAL_PRIOR_RANGE[1] for r in ratios.values())
    keep = other is not None and plausible and (model is None or colmap.model_rank(other) > colmap.model_rank(model))
    for summary in other_models:
        summary.update(focal_priors=False, focal_to_prior={str(k): round(v, 3) for k, v in ratios.items()},
                       kept=keep)
    if keep:
        print(f"[mapping] without focal priors: {other.num_reg_images()}/{num_images} images (kept)")
    elif other is not None:
        reason = "focal far from the prior" if not plausible else "not better"
        print(f"[mapping] without focal priors: {other.num_reg_images()}/{num_images} images ({reason}; not kept)")
    return (other, models + other_models) if keep else (model, models + other_models)


def _map(conf: dict[str, Any], database: Path, image_dir: Path, output: Path, num_images: int):
    """Map, then (camera.refine_principal_point) a final BA that refines principal points.

    'auto' refines only when every camera has >= PP_MIN_IMAGES registered images, after mapping: refining it
    during mapping diverges on 2-image initial models (seen on opensfm_lund). True refines during mapping.
    """

    choice = conf["camera"]["refine_principal_point"]
    fixed = bool(conf["camera"]["intrinsics"])  # known intrinsics are held fixed, never refined
    during = choice is True and not fixed
    mapper, fallback = conf["mapper"]["type"], conf["mapper"]["fallback"]
    target = conf["mapper"]["fallback_below"] * num_images
    attempts = max(1, int(conf["mapper"]["attempts"]))
    found, models = [], []
    for attempt in range(attempts):
        options = _mapper_options(conf["mapper"], attempt)
        if attempt:
            print(f"[mapping] {mapper} mapping registered {registered}/{num_images} images; attempt {attempt + 1} "
                  f"with random seed {options['random_seed']}")
        model, attempt_models = _run_mapper(mapper, options, during, database, image_dir, output, num_images,
                                            fixed)
        models += [{**m, "attempt": attempt} for m in attempt_models]
        found += [model] if model is not None else []
        model = max(found, key=colmap.model_rank, default=None)
        registered = model.num_reg_images() if model is not None else 0
        if registered >= target:
            break
    if fallback and fallback != mapper and registered < target:
        print(f"[mapping] {mapper} mapping registered {registered}/{num_images} images; trying {fallback} mapping")
        # mapper.options are keys of `type` pipeline options; the fallback keeps only the seed and threads
        other, other_models = _run_mapper(fallback, _mapper_options({**conf["mapper"], "options": {}}, 0), during,
                                          database, image_dir, output, num_images, fixed)
        models += other_models
        # a fallback model with almost no points is degenerate (seen: 10 images held by 15 points)
        if (other is not None and other.num_reg_images() > registered
                and other.num_points3D() >= MIN_POINTS_PER_IMAGE * other.num_reg_images()):
            model = other
    refined = during
    if choice == "auto" and model is not None and not conf["camera"]["intrinsics"]:
        refined = colmap.refine_principal_points(model, PP_MIN_IMAGES)
    if model is not None:
        colmap.remove_bad_points(model)
    for summary in models:
        summary["principal_point_refined"] = refined
    return model, models


def _mapper_options(mapper_conf: dict[str, Any], attempt: int) -> dict[str, Any]:
    """Pipeline options of mapping run `attempt`: the user's options plus its seed and thread count.

    The base seed is `options.random_seed` if given, else `seed`; run k uses base + k. With no base seed
    (None or negative) the first run keeps COLMAP's time-derived seed and run k uses seed k.
    `options.num_threads` wins over `deterministic`.
    """
    options = dict(mapper_conf["options"])
    base = options.pop("random_seed", mapper_conf["seed"])
    if base is not None and int(base) >= 0:
        options["random_seed"] = int(base) + attempt
    elif attempt:
        options["random_seed"] = attempt
    if mapper_conf["deterministic"]:
        options.setdefault("num_threads", 1)
    return options


def _run_mapper(mapper: str, user_options: dict[str, Any], refine_pp: bool, database: Path, image_dir: Path,
                output: Path, num_images: int, fixed_intrinsics: bool = False):
    """One COLMAP mapping run (incremental or global); returns the largest model and all model sizes.

    fixed_intrinsics: bundle adjustment refines no camera parameter (--intrinsics given)."""
    from tqdm import tqdm

    base = colmap.refine_options(mapper, fixed_intrinsics, refine_pp)
    if mapper == "incremental":
        base["extract_colors"] = False
    options = colmap.deep_update(base, user_options)
    with tqdm(total=num_images, desc=f"{mapper} mapping", unit="img") as bar:
        model, models = colmap.run_mapping(database, image_dir, output / "sfm.models", mapper, options,
                                           progress=bar)
        bar.n = model.num_reg_images() if model is not None else 0
        bar.refresh()
    shutil.rmtree(output / "sfm.models", ignore_errors=True)
    for summary in models:
        summary["mapper"] = mapper
    return model, models


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Reconstruct a folder of photos into a COLMAP model.",
                                     epilog="Extra key=value arguments override the configuration, e.g. "
                                            "verification.ransac.max_error=2 mapper.options.num_threads=4")
    parser.add_argument("--images", type=Path, required=True, help="folder of photos (searched recursively)")
    parser.add_argument("--output", type=Path, help="output folder (default outputs/<name of the image folder>)")
    parser.add_argument("--pairs", help="exhaustive | sequential:N | retrieval:K | file:PATH "
                                        f"(default: exhaustive up to {EXHAUSTIVE_MAX_IMAGES} images, else retrieval:20)")
    parser.add_argument("--matcher", help=f"matcher name (default {DEFAULT_MATCHER}); see l2m_sfm.matchers")
    parser.add_argument("--variant", help="L2M model variant, or LoFTR's outdoor / indoor (L2M matchers and loftr only)")
    parser.add_argument("--weights", type=Path, help="checkpoint file of an L2M matcher or of loftr (e.g. outdoor_ds.ckpt)")
    parser.add_argument("--coarse-weights", type=Path,
                        help="coarse-encoder ViT file of l2m++ / l2m-vitb (default: found in $L2M_HOME/checkpoints)")
    parser.add_argument("--mapper", choices=("auto", "incremental", "global"),
                        help=f"default auto: incremental up to {GLOBAL_MAPPING_ABOVE} images, global above")
    parser.add_argument("--camera-mode", choices=colmap.CAMERA_MODES)
    parser.add_argument("--camera-model", help="COLMAP camera model (default SIMPLE_RADIAL)")
    parser.add_argument("--intrinsics", help="known intrinsics 'fx,fy,cx,cy' (pixels, COLMAP convention)")
    parser.add_argument("--device", help="cpu or cuda")
    parser.add_argument("--overwrite", action="store_true", help="recompute everything")
    parser.add_argument("--verbose", action="store_true", help="show COLMAP's log on the console")
    parser.add_argument("overrides", nargs="*", help="key=value configuration overrides")
    return parser.parse_args(argv)


def conf_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags + key=value overrides -> a reconstruct conf (flags win)."""
    conf = parse_overrides(args.overrides)
    if args.pairs:
        conf["pairs"] = args.pairs
    matcher = conf.setdefault("matcher", {})
    if args.matcher:
        matcher["name"] = args.matcher
    given = [f for f, v in (("--weights", args.weights), ("--coarse-weights", args.coarse_weights),
                            ("--variant", args.variant)) if v]
    for flag in given:
        _check_l2m_flags(matcher.get("name") or DEFAULT_MATCHER, flag)
    if args.variant:
        matcher.setdefault("conf", {})["variant"] = args.variant
    if args.weights:
        matcher.setdefault("conf", {})["weights"] = str(args.weights)
    if args.coarse_weights:
        matcher.setdefault("conf", {})["coarse_weights"] = str(args.coarse_weights)
    if args.mapper:
        conf.setdefault("mapper", {})["type"] = args.mapper
    camera = conf.setdefault("camera", {})
    for key, value in (("mode", args.camera_mode), ("model", args.camera_model), ("intrinsics", args.intrinsics)):
        if value:
            camera[key] = value
    if args.device:
        conf["device"] = args.device
    if args.verbose:
        conf["verbose"] = True
    return conf


WEIGHTED_MODULES = ("l2m_sfm.l2m_matcher", "l2m_sfm.loftr_matcher")  # matchers whose conf has weights / variant


def _check_l2m_flags(matcher: str, flag: str) -> None:
    """--weights / --coarse-weights / --variant belong to L2M matchers (and --weights / --variant to LoFTR); others
    would fail later on an unknown conf key."""
    from l2m_sfm.matchers import MATCHERS, matcher_entry

    module = matcher_entry(matcher)[0]
    if flag == "--coarse-weights" and module != "l2m_sfm.l2m_matcher":
        raise ConfigError(f"--coarse-weights is for l2m++ and l2m-vitb (their ViT file); matcher {matcher} takes "
                          "none: drop it")
    if module not in WEIGHTED_MODULES:
        names = ", ".join(n for n, e in MATCHERS.items() if e.split(":")[0] in WEIGHTED_MODULES)
        raise ConfigError(f"{flag} is for L2M matchers and LoFTR ({names}); matcher {matcher} takes none: drop "
                          f"{flag} or pass --matcher l2m-tiny")


def check_device(device: str) -> None:
    """Raise ConfigError unless `device` names a torch device that exists here ('cpu', 'cuda', 'cuda:N')."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"--device {device!r} is not a torch device; use cpu or cuda") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine (torch {torch.__version__}); "
                          "use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: only cpu and cuda are supported")


def cli(argv: list[str] | None = None) -> int:
    from l2m.models.checkpoint import CheckpointMismatchError
    from l2m_sfm.h5io import H5LookupError
    from l2m.images import ImageReadError
    from l2m_sfm.matchers import matcher_entry
    from l2m_sfm.pairs import PairFileError

    args = parse_args(argv)
    output = args.output or Path("outputs") / args.images.resolve().name
    try:
        conf = conf_from_args(args)
        if "device" in conf:
            check_device(str(conf["device"]))
        if conf["matcher"].get("name") is not None:
            matcher_entry(conf["matcher"]["name"])
        main(conf, args.images, output, overwrite=args.overwrite)
    except (ReconstructionError, ConfigError, FileNotFoundError, CheckpointMismatchError, PairFileError,
            H5LookupError, ImageReadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permissions changed mid-run, ...: the file and the reason, no traceback
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or e}{where}; fix this and rerun the same command: finished work is reused",
              file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; use fewer or smaller images, or a smaller matcher (e.g. --matcher sift); "
              "rerun the same command: finished work is reused", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume: finished work is reused", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a user never gets a traceback; L2M_DEBUG=1 shows it
        if os.environ.get("L2M_DEBUG"):
            raise
        print(f"error: unexpected {type(e).__name__}: {e} (a bug: please report it with {output}/report.json; "
              "L2M_DEBUG=1 shows the traceback); rerun the same command to resume", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
