"""Relative-pose (and SfM) benchmark on folders of scenes with a COLMAP ground truth.

A scene is a folder with `images/`, `gt/` (COLMAP model, pinhole cameras, world-to-camera poses) and
optionally `pairs.txt` (`name0 name1` per line, names relative to images/); without it the pairs are all
(i, j), i < j, j - i <= 3 in sorted name order.

    python pipelines/scene_benchmark.py --scenes ../shared/data/strecha --output outputs/strecha
    python pipelines/scene_benchmark.py --scenes ../shared/data/strecha/fountain-P11 --matchers sift \
        --protocol loftr --output outputs/fountain
    python pipelines/scene_benchmark.py --mode sfm --scenes ../shared/data/strecha --matchers sift --output out

Default protocol `poselib`: LO-RANSAC + refinement with a 1 px epipolar threshold in ORIGINAL pixels, images
given to the matcher at long side 1024. A threshold in original pixels means the same for every matcher
whatever resolution it runs at, PoseLib is the most accurate of the three estimators (spec §2.3), and the
reference figures in ../shared/data/strecha/README.md use exactly this protocol.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from l2m_bench.cli import add_common_args, matcher_confs, run_two_view  # noqa: E402
from l2m.data.benchmark_pairs import BenchmarkDataError, BenchPair, load_scene, resolve_images  # noqa: E402
from l2m_bench.files import package_versions, write_json  # noqa: E402
from l2m.evaluation.metrics import pose_auc  # noqa: E402


def find_scenes(paths: list[Path]) -> list[Path]:
    """Scene folders: each given path that has gt/ + images/, else its sub-folders that do."""
    scenes = []
    for path in paths:
        path = Path(path)
        if (path / "gt").is_dir() and (path / "images").is_dir():
            scenes.append(path)
            continue
        subs = sorted(p for p in path.iterdir() if (p / "gt").is_dir() and (p / "images").is_dir()) \
            if path.is_dir() else []
        if not subs:
            raise BenchmarkDataError(f"{path} is neither a scene (images/ + gt/) nor a folder of scenes")
        scenes += subs
    names = [s.name for s in scenes]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise BenchmarkDataError(f"Scene names must be unique, got {sorted(dup)} several times")
    return scenes


def load_scenes(scenes: list[Path], max_gap: int = 3) -> tuple[list[BenchPair], dict[str, Path]]:
    """All pairs, names prefixed `<scene>/` so one cache holds every scene; and scene name -> folder."""
    pairs = []
    for scene in scenes:
        for p in load_scene(scene, max_gap):
            p.name0, p.name1 = f"{scene.name}/{p.name0}", f"{scene.name}/{p.name1}"
            pairs.append(p)
    return pairs, {s.name: s for s in scenes}


def scene_image(scene_dirs: dict[str, Path], name: str) -> list[Path]:
    """`<scene>/<image>` -> <scene folder>/images/<image>."""
    scene, _, image = name.partition("/")
    return [scene_dirs[scene] / "images" / image]


def per_scene_table(rows: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> tuple[str, list[dict]]:
    """AUC@5/10/20 (%) per scene and matcher, and the same as JSON-able records."""
    out, lines = [], [f"{'scene':<18} {'matcher':<20} {'pairs':>5} {'AUC@5':>6} {'AUC@10':>6} {'AUC@20':>6} "
                      f"{'fail':>5}"]
    lines.append("-" * len(lines[0]))
    for row in rows:
        by_scene: dict[str, list[dict]] = {}
        for r in runs[row["matcher"]]:
            by_scene.setdefault(r["info"]["scene"], []).append(r)
        for scene, recs in by_scene.items():
            auc = pose_auc([t["error"] for r in recs for t in r["trials"]], (5, 10, 20))
            fail = sum(r["failures"] for r in recs)
            out.append({"scene": scene, "matcher": row["matcher"], "pairs": len(recs), "auc@5": auc[0],
                        "auc@10": auc[1], "auc@20": auc[2], "failures": fail})
            lines.append(f"{scene:<18} {row['matcher']:<20} {len(recs):5d} {100 * auc[0]:6.1f} "
                         f"{100 * auc[1]:6.1f} {100 * auc[2]:6.1f} {fail:5d}")
    return "\n".join(lines), out


def run_sfm(args: argparse.Namespace, scenes: list[Path]) -> list[dict[str, Any]]:
    """Reconstruct every scene with every matcher (l2m_sfm.reconstruct) and score it against gt/
    (l2m_sfm.evaluate: registration, camera errors after Sim(3) alignment, pairwise AUC over all image pairs)."""
    import time

    import pycolmap

    from l2m.config import parse_overrides
    from l2m_sfm import evaluate, reconstruct
    from l2m_sfm import report as report_mod
    from l2m_bench.page import write_sfm_page

    sfm_overrides = parse_overrides(args.sfm_conf)
    rows = []
    for scene in scenes:
        gt = pycolmap.Reconstruction(str(scene / "gt"))
        for name, mconf in matcher_confs(args).items():
            out = args.output / "sfm" / scene.name / name.replace("/", "_")
            conf = dict(sfm_overrides, matcher={"name": name, "conf": mconf}, device=args.device)
            t0 = time.time()
            try:
                model_dir = reconstruct.main(conf, scene / "images", out)
                result = evaluate.evaluate(pycolmap.Reconstruction(str(model_dir)), gt)
                error = None
            except reconstruct.ReconstructionError as e:  # a failed reconstruction is a result, not a crash
                result, error = {"num_gt_images": gt.num_images(), "num_registered": 0, "auc": {}}, str(e)
            row = {"scene": scene.name, "matcher": name, "matcher_conf": mconf, "sfm_conf": conf,
                   "seconds": round(time.time() - t0, 1), "error": error, **evaluate.to_json(result)}
            write_json(row, out / "eval.json")
            if error is None:  # the scene's report.html gets the per-image errors
                report_mod.write_html_report(out)
            rows.append(row)
    lines = [f"{'scene':<18} {'matcher':<20} {'reg':>7} {'AUC@5':>6} {'AUC@10':>6} {'AUC@20':>6} "
             f"{'med.centre err':>14} {'med.rot [deg]':>13} {'s':>6}"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        auc = [100 * (r["auc"].get(f"@{t}") or 0.0) for t in (5, 10, 20)]
        centre, rot = r.get("median_center_error"), r.get("median_rotation_error_deg")
        lines.append(f"{r['scene']:<18} {r['matcher']:<20} {r['num_registered']:>3}/{r['num_gt_images']:<3} "
                     f"{auc[0]:6.1f} {auc[1]:6.1f} {auc[2]:6.1f} "
                     f"{centre if centre is None else f'{centre:.4f}':>14} "
                     f"{rot if rot is None else f'{rot:.3f}':>13} {r['seconds']:6.0f}")
    table = "\n".join(lines)
    print(table)
    write_json({"mode": "sfm", "versions": package_versions(), "table": table.splitlines(), "results": rows},
               args.output / "results_sfm.json")
    print(f"results page: {write_sfm_page(args.output, rows)}")
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=Path, nargs="+", required=True,
                        help="scene folders, or folders containing scene folders")
    parser.add_argument("--mode", choices=("pairs", "sfm"), default="pairs",
                        help="pairs: two-view relative pose AUC; sfm: reconstruct + evaluate against gt/")
    parser.add_argument("--max-gap", type=int, default=3, help="pair rule when a scene has no pairs.txt")
    parser.add_argument("--sfm-conf", nargs="*", default=[], metavar="KEY=VALUE",
                        help="--mode sfm: l2m_sfm.reconstruct conf overrides, e.g. pairs=sequential:3 "
                             "camera.mode=single")
    add_common_args(parser, default_protocol="poselib")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> tuple[list[dict], dict]:
    args = parse_args(argv)
    try:
        scenes = find_scenes(args.scenes)
        if args.mode == "sfm":
            return run_sfm(args, scenes), {}
        pairs, scene_dirs = load_scenes(scenes, args.max_gap)
        benchmark = "scenes_" + "+".join(sorted({s.parent.name for s in scenes}))
        rows, runs = run_two_view(args, "scenes", benchmark, pairs,
                                  lambda ps: resolve_images(ps, lambda n: scene_image(scene_dirs, n), "scene"),
                                  extra={"scenes": {s.name: str(s) for s in scenes}},
                                  page_tables=lambda rows, runs: {"Per scene": per_scene_table(rows, runs)[1]})
    except BenchmarkDataError as e:
        raise SystemExit(f"error: {e}")
    if rows:
        table, per_scene = per_scene_table(rows, runs)
        print(table)
        write_json({"benchmark": benchmark, "protocol": rows[0]["protocol"], "seed": args.seed,
                    "matcher_confs": matcher_confs(args), "versions": package_versions(),
                    "table": table.splitlines(), "per_scene": per_scene},
                   args.output / f"results_{args.protocol}_per_scene.json")
    return rows, runs


if __name__ == "__main__":
    main()
