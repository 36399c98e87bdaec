"""End-to-end SfM runs of l2m_sfm.reconstruct per scene and matcher; prints a table and writes JSON.

Modes:
  smoke    every scene of ../shared/data/sfm_smoke: registered/total per matcher, next to plain pycolmap SIFT
           (extract_features + match_exhaustive + incremental_mapping, camera mode AUTO).
  strecha  ../shared/data/strecha scenes with GT: registered, median rotation / centre error, pose AUC
           (l2m_sfm.evaluate); used to choose the default matcher.

    python benchmarks/sfm_smoke.py smoke --matchers sift disk+lightglue --output outputs/bench/sfm_smoke.json
    python benchmarks/sfm_smoke.py strecha --scenes fountain-P11 Herz-Jesus-P8

Runs resume (outputs under outputs/bench/<mode>/<scene>/<matcher>); pass --overwrite to redo them.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("L2M_SHARED_DATA", REPO / ".." / "shared" / "data"))
BASELINES = ["sift", "disk+lightglue", "aliked+lightglue", "xfeat+lighterglue"]


def run_reconstruct(images: Path, output: Path, matcher: str, overwrite: bool,
                    matcher_conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """One l2m_sfm.reconstruct run; returns its report (with 'error' when nothing reconstructed)."""
    from l2m_sfm import reconstruct

    conf = {"matcher": {"name": matcher, "conf": matcher_conf or {}}}
    start = time.perf_counter()
    try:
        reconstruct.main(conf, images, output, overwrite=overwrite)
    except reconstruct.ReconstructionError:
        pass
    except Exception as e:  # noqa: BLE001 - a benchmark keeps going and records the failure
        traceback.print_exc()
        return {"error": f"{type(e).__name__}: {e}", "wall_seconds": time.perf_counter() - start}
    report = json.loads((output / "report.json").read_text())
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    return report


def run_plain_pycolmap(images: Path, output: Path, overwrite: bool) -> dict[str, Any]:
    """COLMAP's own default pipeline: SIFT, exhaustive matching, incremental mapping (camera mode AUTO)."""
    import pycolmap

    from l2m_sfm.colmap import colmap_logging

    result_file = output / "plain_pycolmap.json"
    if result_file.exists() and not overwrite:
        return json.loads(result_file.read_text())
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    db = output / "database.db"
    start = time.perf_counter()
    with colmap_logging(output / "colmap.log."):
        pycolmap.Database.open(str(db)).close()
        pycolmap.extract_features(str(db), str(images), extraction_options=pycolmap.FeatureExtractionOptions(
            num_threads=2, use_gpu=False), device=pycolmap.Device.cpu)
        pycolmap.match_exhaustive(str(db), matching_options=pycolmap.FeatureMatchingOptions(
            num_threads=2, use_gpu=False), device=pycolmap.Device.cpu)
        models = pycolmap.incremental_mapping(str(db), str(images), str(output / "models"),
                                              pycolmap.IncrementalPipelineOptions(num_threads=2))
    with pycolmap.Database.open(str(db)) as d:
        total = d.num_images()
    best = max(models.values(), key=lambda r: r.num_reg_images(), default=None)
    result = {"registered": best.num_reg_images() if best else 0, "total": total,
              "points3D": best.num_points3D() if best else 0, "seconds": round(time.perf_counter() - start, 1)}
    result_file.write_text(json.dumps(result, indent=2))
    return result


def smoke(args: argparse.Namespace) -> dict[str, Any]:
    root = DATA / "sfm_smoke"
    scenes = args.scenes or sorted(p.name for p in root.iterdir() if (p / "images").is_dir())
    rows = {}
    for scene in scenes:
        images = root / scene / "images"
        row: dict[str, Any] = {}
        if not args.skip_plain:
            print(f"== {scene}: plain pycolmap SIFT", flush=True)
            row["pycolmap-sift"] = run_plain_pycolmap(images, args.workdir / "smoke" / scene / "_pycolmap",
                                                      args.overwrite)
        for matcher in args.matchers:
            print(f"== {scene}: {matcher}", flush=True)
            rep = run_reconstruct(images, args.workdir / "smoke" / scene / matcher.replace("+", "_"), matcher,
                                  args.overwrite, args.confs[matcher])
            model = rep.get("model") or {}
            row[matcher] = {"registered": model.get("registered", 0), "total": rep.get("images", {}).get("found"),
                            "points3D": model.get("points3D", 0),
                            "reproj_px": model.get("mean_reprojection_error_px"),
                            "seconds": rep.get("wall_seconds"), "error": rep.get("error"),
                            # which weights (file name + SHA-1) and every mapping attempt's model sizes
                            "identity": rep.get("config", {}).get("matcher", {}).get("identity"),
                            "mapping": rep.get("models")}
        rows[scene] = row
        _print_smoke(rows, ["pycolmap-sift"] * (not args.skip_plain) + args.matchers)
    return rows


def _print_smoke(rows: dict[str, Any], methods: list[str]) -> None:
    print(f"\n{'scene':<16}" + "".join(f"{m:>20}" for m in methods))
    for scene, row in rows.items():
        cells = []
        for m in methods:
            r = row.get(m)
            cells.append(f"{r['registered']}/{r['total']} ({r['seconds']:.0f}s)" if r and r.get("total") else "-")
        print(f"{scene:<16}" + "".join(f"{c:>20}" for c in cells))


def strecha(args: argparse.Namespace) -> dict[str, Any]:
    import pycolmap

    from l2m_sfm.evaluate import evaluate

    root = DATA / "strecha"
    scenes = args.scenes or ["fountain-P11", "Herz-Jesus-P8"]
    rows = {}
    for scene in scenes:
        gt = pycolmap.Reconstruction(str(root / scene / "gt"))
        row = {}
        for matcher in args.matchers:
            print(f"== {scene}: {matcher}", flush=True)
            out = args.workdir / "strecha" / scene / matcher.replace("+", "_")
            rep = run_reconstruct(root / scene / "images", out, matcher, args.overwrite, args.confs[matcher])
            if (out / "sfm" / "images.bin").exists() and not rep.get("error"):
                ev = evaluate(pycolmap.Reconstruction(str(out / "sfm")), gt)
                row[matcher] = {k: ev[k] for k in ("num_registered", "num_gt_images", "median_rotation_error_deg",
                                                   "median_center_error", "auc")}
            else:
                row[matcher] = {"num_registered": 0, "num_gt_images": len(gt.images), "error": rep.get("error")}
            row[matcher]["seconds"] = rep.get("wall_seconds")
        rows[scene] = row
        _print_strecha(rows)
    return rows


def _print_strecha(rows: dict[str, Any]) -> None:
    print(f"\n{'scene':<14} {'matcher':<20} {'reg':>6} {'rot med (deg)':>14} {'centre med':>11} "
          f"{'AUC@5/10/20 (%)':>18} {'time':>7}")
    for scene, row in rows.items():
        for m, r in row.items():
            auc = "/".join(f"{100 * v:.1f}" for v in r["auc"].values()) if "auc" in r else "-"
            rot = f"{r['median_rotation_error_deg']:.3f}" if "auc" in r else "-"
            cen = f"{r['median_center_error']:.4f}" if "auc" in r else "-"
            print(f"{scene:<14} {m:<20} {r['num_registered']:>3}/{r['num_gt_images']:<2} {rot:>14} {cen:>11} "
                  f"{auc:>18} {r['seconds'] or 0:>6.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("smoke", "strecha"))
    parser.add_argument("--matchers", nargs="+", default=BASELINES)
    parser.add_argument("--scenes", nargs="+")
    parser.add_argument("--workdir", type=Path, default=REPO / "outputs" / "bench")
    parser.add_argument("--output", type=Path, help="JSON file (default <workdir>/<mode>.json)")
    parser.add_argument("--skip-plain", action="store_true", help="smoke: skip the plain pycolmap SIFT column")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--matcher-conf", nargs="*", default=[], metavar="NAME.KEY=VALUE",
                        help="matcher conf overrides, e.g. l2m-tiny.weights=runs/s2_384/matcher.pt")
    parser.add_argument("--weights", type=Path, help="checkpoint for the L2M variants (sets <l2m-*>.weights)")
    args = parser.parse_args(argv)
    import torch

    from l2m_bench.cli import matcher_confs

    args.confs = matcher_confs(args)  # name -> conf from --matcher-conf / --weights

    torch.set_num_threads(2)
    rows = smoke(args) if args.mode == "smoke" else strecha(args)
    out = args.output or args.workdir / f"{args.mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    for scene, row in rows.items():  # merge with earlier runs of other scenes / matchers
        previous.setdefault(scene, {}).update(row)
    out.write_text(json.dumps(previous, indent=2, default=str))
    print(f"\nJSON written to {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
