"""Real training pairs for stage 2: reconstruct small scenes with a baseline matcher, list them for data.sfm.

Two sources, both outside the evaluation scenes (../shared/data/strecha is never touched):
  * every scene of ../shared/data/sfm_smoke, reconstructed with --matcher (default sift): covisible 3D points;
  * the photos of ../shared/data/singleview that show one scene (grouped by their source folder in
    manifest.csv: WxBS, EVD, Phototourism samples, ...; groups of 2-8 photos), matched with --pair-matcher
    (default aliked+lightglue): geometrically verified matches (two photos rarely give a model).

    python pipelines/real_pairs.py --output outputs/real_pairs
    python pipelines/train_stage2.py --preset stage2_tiny_cpu_sfm --output runs/s2_sfm \
        --images ../shared/data/singleview/images --real-pairs outputs/real_pairs/sources.json

Writes <output>/sources.json (the `task.data.sfm` list), <output>/sources_sfm_smoke.json (its sfm_smoke models
only: what the bundled l2m-tiny was fine-tuned on) and <output>/report.json (pairs and correspondences per
source). Runs resume: a scene whose reconstruction output exists is not recomputed.

`--hold-out SCENE ...` keeps sfm_smoke scenes out of both lists and writes each as a validation scene for
`task.real_val.scene` and pipelines/scene_benchmark.py instead: <output>/val/<scene>/ with images/ and gt/ (the
photos and the SIFT model, undistorted to PINHOLE by COLMAP) and pairs.txt (registered images, all i<j with
j-i <= 3 in sorted order, the Strecha rule).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from l2m.data.sfm_pairs import source_pairs  # noqa: E402
from l2m.data.benchmark_pairs import default_scene_pairs  # noqa: E402
from l2m_sfm.pairs import write_pairs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("L2M_SHARED_DATA", REPO / ".." / "shared" / "data"))


def photo_groups(manifest: Path, min_size: int = 2, max_size: int = 8) -> dict[str, list[str]]:
    """Photos of the single-view corpus that show one scene, `min_size` to `max_size` per group: a source
    folder of that many photos (WxBS scene folders, demo assets); in larger folders, photos whose names
    differ only by trailing digits (Phototourism `<landmark>_<id>_<id>`), across numbered view folders
    (EVD `1/<scene>.png`, `2/<scene>.png`)."""
    rows = list(csv.DictReader(manifest.open()))
    by_folder: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_folder[f"{r['source_repo']}/{Path(r['source_path']).parent}"].append(r)
    groups: dict[str, list[str]] = defaultdict(list)
    for folder, members in by_folder.items():
        for r in members:
            src = Path(r["source_path"])
            if min_size <= len(members) <= max_size:
                key = f"{r['group']}_{src.parent.parent.name}_{src.parent.name}"
            else:
                parent = "" if src.parent.name.isdigit() else f"{src.parent.name}_"
                key = f"{r['group']}_{parent}{src.stem.rstrip('0123456789_')}"
            groups[key].append(r["file"])
    return {k: sorted(v) for k, v in sorted(groups.items()) if min_size <= len(v) <= max_size}


def reconstruct(images: Path, output: Path, matcher: str, extra: list[str]) -> int:
    """Run l2m_sfm.reconstruct unless `output` already holds its result; returns its exit code (0 if done)."""
    if (output / "report.json").is_file():
        return 0
    cmd = [sys.executable, "-m", "l2m_sfm.reconstruct", "--images", str(images), "--output", str(output),
           "--matcher", matcher, *extra]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if res.returncode:
        last = (res.stdout + res.stderr).strip().splitlines()
        print(f"    {output.name}: {last[-1][:160] if last else 'failed'}", flush=True)
    return res.returncode


def validation_scene(images: Path, model: Path, folder: Path) -> Path:
    """A scene folder with ground truth (`task.real_val.scene`, pipelines/scene_benchmark.py) made from a
    reconstruction: images/ and gt/ undistorted to PINHOLE by COLMAP (both consumers use K alone), pairs.txt
    the registered images' pairs with j-i <= 3 in sorted order. Done once: an existing folder is kept."""
    import pycolmap

    if (folder / "pairs.txt").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pycolmap.undistort_images(tmp, model, images)  # tmp/images, tmp/sparse (+ MVS files, not kept)
    names = [im.name for im in pycolmap.Reconstruction(str(tmp / "sparse")).images.values()]
    write_pairs(default_scene_pairs(names), tmp / "pairs.txt")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for src, dst in (("images", "images"), ("sparse", "gt"), ("pairs.txt", "pairs.txt")):  # pairs.txt last: done
        (tmp / src).rename(folder / dst)
    shutil.rmtree(tmp)
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=REPO / "outputs" / "real_pairs")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("--matcher", default="sift", help="matcher of the sfm_smoke reconstructions")
    ap.add_argument("--pair-matcher", default="aliked+lightglue", help="matcher of the single-view groups")
    ap.add_argument("--min-points", type=int, default=50)
    ap.add_argument("--hold-out", nargs="*", default=[], metavar="SCENE",
                    help="sfm_smoke scenes kept out of training, written as validation scenes under <output>/val")
    args = ap.parse_args(argv)
    args.output, args.data = args.output.resolve(), args.data.resolve()  # reconstructions run in the repository

    sources, report = [], []

    def add(entry: dict[str, str]) -> None:
        pairs = source_pairs(entry, args.min_points)
        if pairs:
            sources.append(entry)
            report.append({**entry, "pairs": len(pairs), "correspondences": int(sum(len(p.xy_A) for p in pairs))})

    smoke = args.data / "sfm_smoke"
    scenes = sorted(p for p in smoke.iterdir() if (p / "images").is_dir())
    unknown = set(args.hold_out) - {p.name for p in scenes}
    if unknown:
        ap.error(f"--hold-out: no sfm_smoke scene {', '.join(sorted(unknown))} in {smoke}")
    for scene in scenes:
        out = args.output / "sfm_smoke" / scene.name
        print(f"[real_pairs] sfm_smoke/{scene.name}: reconstruct with {args.matcher}", flush=True)
        if reconstruct(scene / "images", out, args.matcher, []) != 0 or not (out / "sfm").is_dir():
            continue
        if scene.name in args.hold_out:
            val = validation_scene(scene / "images", out / "sfm", args.output / "val" / scene.name)
            print(f"    held out for validation: {val}", flush=True)
        else:
            add({"images": str(scene / "images"), "model": str(out / "sfm")})
    single = args.data / "singleview"
    for name, files in photo_groups(single / "manifest.csv").items():
        folder = args.output / "singleview" / name
        images = folder / "images"
        images.mkdir(parents=True, exist_ok=True)
        for f in files:  # links, not copies, of the shared photos
            link = images / Path(f).name
            if not link.exists():
                link.symlink_to((single / f).resolve())
        print(f"[real_pairs] singleview/{name} ({len(files)} photos): match with {args.pair_matcher}", flush=True)
        reconstruct(images, folder / "run", args.pair_matcher, ["--camera-mode", "per-image"])
        if (folder / "run" / "database.db").is_file():
            add({"images": str(images), "database": str(folder / "run" / "database.db")})
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "sources.json").write_text(json.dumps(sources, indent=1) + "\n")
    smoke_only = [e for e in sources if "model" in e]  # the sfm_smoke models alone (the shipped recipe)
    (args.output / "sources_sfm_smoke.json").write_text(json.dumps(smoke_only, indent=1) + "\n")
    (args.output / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    n_pairs = sum(r["pairs"] for r in report)
    n_corr = sum(r["correspondences"] for r in report)
    print(f"[real_pairs] {len(sources)} sources, {n_pairs} pairs, {n_corr} correspondences -> "
          f"{args.output / 'sources.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
