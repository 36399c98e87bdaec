"""Seconds per pipeline stage of l2m_sfm.reconstruct, per scene and matcher (fresh runs); table + JSON.

    python benchmarks/stage_timing.py [--matchers sift disk+lightglue ...] [--scenes strecha/fountain-P11 ...]

Scenes are paths relative to ../shared/data (default: strecha/fountain-P11 and sfm_smoke/sacre_coeur).
Every run starts from scratch (--overwrite), so the figures include model loading and feature extraction.
The stage names are those of report.json["seconds"].
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from sfm_smoke import BASELINES, DATA, run_reconstruct  # noqa: E402

STAGES = ["list images", "pairs", "matching", "database + verification", "mapping", "write model"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matchers", nargs="+", default=BASELINES)
    parser.add_argument("--scenes", nargs="+", default=["strecha/fountain-P11", "sfm_smoke/sacre_coeur"])
    parser.add_argument("--workdir", type=Path, default=REPO / "outputs" / "bench" / "timing")
    parser.add_argument("--output", type=Path, default=REPO / "outputs" / "bench" / "stage_timing.json")
    parser.add_argument("--reuse", action="store_true", help="read existing reports instead of rerunning")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    results: dict = json.loads(args.output.read_text()) if args.output.exists() else {}
    for scene in args.scenes:
        for matcher in args.matchers:
            out = args.workdir / scene.replace("/", "_") / matcher.replace("+", "_")
            if args.reuse and (out / "report.json").exists():
                rep = json.loads((out / "report.json").read_text())
            else:
                print(f"== {scene}: {matcher}", flush=True)
                rep = run_reconstruct(DATA / scene / "images", out, matcher, overwrite=True)
            model = rep.get("model") or {}
            results.setdefault(scene, {})[matcher] = {
                "seconds": rep.get("seconds", {}), "total": round(sum(rep.get("seconds", {}).values()), 1),
                "images": rep.get("images", {}).get("found"), "pairs": rep.get("pairs", {}).get("num_pairs"),
                "registered": model.get("registered", 0), "matching_stats": rep.get("matching"),
            }
            _print(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nJSON written to {args.output}")
    return 0


def _print(results: dict) -> None:
    short = ["list", "pairs", "match", "db+verif", "map", "write"]
    print(f"\n{'scene':<24} {'matcher':<18}" + "".join(f"{s:>9}" for s in short) + f"{'total':>9} {'reg':>7}")
    for scene, row in results.items():
        for matcher, r in row.items():
            cells = "".join(f"{r['seconds'].get(s, 0):>9.1f}" for s in STAGES)
            print(f"{scene:<24} {matcher:<18}{cells}{r['total']:>9.1f} {r['registered']:>3}/{r['images']}")


if __name__ == "__main__":
    sys.exit(main())
