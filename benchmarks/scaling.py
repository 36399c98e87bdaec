"""Wall time and peak memory of reconstruct's stages against the number of images, on 1 and N processes.

Two corpora, because no scene of hundreds of real photos with overlap ships with the project:
* matching cost: the first n photos (sorted names) of the single-view corpus (../shared/data/singleview,
  396 real photos <= 640 px): retrieval pairs (XFeat VLAD, rank 0), SIFT extraction and SIFT matching
  (sharded over the processes with l2m_sfm.shards, exactly as `torchrun -m l2m_sfm.reconstruct` does);
* mapping cost: n views of the rendered sample scene (l2m_sfm.sample_scene, 320x240) matched by the exact
  `gt` matcher, sequential:10 pairs, then database + verification and incremental or global mapping.

    nice -n 10 python benchmarks/scaling.py                                   # all of it (tens of minutes)
    nice -n 10 python benchmarks/scaling.py --part matching --sizes 25 50 100 200 --procs 1 2
    nice -n 10 python benchmarks/scaling.py --part mapping --map-sizes 25 50 100 200
    python benchmarks/scaling.py --plot-only

Writes benchmarks/results/scaling.json (each run: seconds per stage, peak RSS per rank, pairs, HDF5 bytes;
fitted growth t = a * n^b per stage) and benchmarks/results/scaling.png. A run already in the JSON is
kept unless --redo. Each run records the 1-minute load average of the machine (other jobs share it). Peak RSS is the process's high-water mark (ru_maxrss) at the end of each stage, so it
covers that stage and every one before it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SINGLEVIEW = REPO.parent / "shared" / "data" / "singleview" / "images"
RESULTS = REPO / "benchmarks" / "results"
WORK = Path(os.environ.get("SCALING_WORK", "/tmp/l2m_scaling"))
RETRIEVAL_K = 10
MAP_VIEW = {"width": 320, "height": 240, "focal": 260.0, "supersample": 1}


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory, MB (Linux ru_maxrss is in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------------- workers
def matching_worker(image_dir: Path, out: Path) -> None:
    """One rank of the matching part (run alone or under torchrun); writes OUT/rank<r>.json."""
    from l2m_sfm import match_features, pairs as pairs_mod, shards
    from l2m_sfm.images import list_images

    sh = shards.setup("cpu")
    out.mkdir(parents=True, exist_ok=True)
    names, _ = list_images(image_dir)
    record: dict[str, Any] = {"rank": sh.rank, "world": sh.world, "seconds": {}, "peak_rss_mb": {},
                              "torch_threads": __import__("torch").get_num_threads()}
    pairs_path, features, matches = out / "pairs.txt", out / "features.h5", out / "matches.h5"

    def stage(name: str, fn) -> None:
        sh.barrier()
        t0 = time.perf_counter()
        fn()
        sh.barrier()
        record["seconds"][name] = round(time.perf_counter() - t0, 3)
        record["peak_rss_mb"][name] = round(peak_rss_mb(), 1)

    pairs_conf = pairs_mod.conf_from_string(f"retrieval:{RETRIEVAL_K}")

    def retrieval_pairs() -> None:  # as reconstruct does it: descriptors sharded, pairs on rank 0
        if sh.distributed:
            pairs_mod.describe_sharded(pairs_conf, names, pairs_path, image_dir, sh)
        if sh.is_main:
            pairs_mod.main(pairs_conf, names, pairs_path, image_dir=image_dir)

    stage("retrieval pairs", retrieval_pairs)
    empty = out / f"no-pairs.{sh.rank}.txt"
    empty.write_text("")
    stage("extraction", lambda: match_features.main({"matcher": "sift"}, image_dir, names, empty, features,
                                                    matches, progress=False, shards=sh))
    stage("matching", lambda: match_features.main({"matcher": "sift"}, image_dir, names, pairs_path, features,
                                                  matches, progress=False, shards=sh))
    if sh.is_main:
        from l2m_sfm.pairs import parse_pairs

        record.update(images=len(names), pairs=len(parse_pairs(pairs_path)),
                      features_bytes=features.stat().st_size, matches_bytes=matches.stat().st_size)
    record["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    (out / f"rank{sh.rank}.json").write_text(json.dumps(record, indent=1))


def mapping_worker(scene: Path, out: Path, mapper: str) -> None:
    """Reconstruct a rendered scene with exact matches and one mapper; writes OUT/run.json."""
    from l2m_sfm import reconstruct

    conf = {"matcher": {"name": "gt", "conf": {"scene": str(scene), "step": 8}}, "pairs": "sequential:10",
            "mapper": {"type": mapper, "attempts": 1, "fallback": None, "drop_focal_priors": False},
            "num_match_images": 0}
    reconstruct.main(conf, scene / "images", out, overwrite=True)
    rep = json.loads((out / "report.json").read_text())
    run = {"seconds": rep["seconds"], "load_average_1min_end": round(os.getloadavg()[0], 2), "registered": rep["model"]["registered"], "points3D": rep["model"]["points3D"],
           "observations": int(rep["model"]["points3D"] * rep["model"]["mean_track_length"]),
           "pairs": rep["pairs"]["num_pairs"], "peak_rss_mb": round(peak_rss_mb(), 1),
           "matches_bytes": (out / "matches.h5").stat().st_size, "features_bytes": (out / "features.h5").stat().st_size}
    (out / "run.json").write_text(json.dumps(run, indent=1))


# ------------------------------------------------------------------------------------------------ driver
def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _subset(n: int) -> Path:
    """A folder of symlinks to the first n single-view photos (sorted names)."""
    folder = WORK / f"singleview_{n}"
    if not folder.exists():
        names = sorted(p.name for p in SINGLEVIEW.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if len(names) < n:
            raise SystemExit(f"{SINGLEVIEW} holds {len(names)} photos, fewer than {n}")
        tmp = folder.with_name(folder.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for name in names[:n]:
            (tmp / name).unlink(missing_ok=True)
            (tmp / name).symlink_to(SINGLEVIEW / name)
        tmp.rename(folder)
    return folder


def run_matching(n: int, procs: int) -> dict[str, Any]:
    images, out = _subset(n), WORK / f"match_n{n}_p{procs}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    me = [str(Path(__file__).resolve()), "--worker", "matching", "--images", str(images), "--out", str(out)]
    cmd = [sys.executable, *me] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port", "29731", *me]
    load_start = round(os.getloadavg()[0], 2)  # the machine is shared: other jobs' load is part of the record
    t0 = time.perf_counter()
    subprocess.run(cmd, env=_env(), check=True)
    wall = time.perf_counter() - t0
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(procs)]
    main = ranks[0]
    return {"part": "matching", "images": n, "procs": procs, "pairs": main["pairs"], "seconds": main["seconds"],
            "wall_seconds_with_startup": round(wall, 1),
            "peak_rss_mb": {stage: max(r["peak_rss_mb"][stage] for r in ranks) for stage in main["seconds"]},
            "peak_rss_mb_per_rank": [r["peak_rss_mb"] for r in ranks], "torch_threads": main["torch_threads"],
            "features_bytes": main["features_bytes"], "matches_bytes": main["matches_bytes"],
            "load_average_1min": {"start": load_start, "end": main.get("load_average_1min_end")}}


def run_mapping(n: int, mapper: str) -> dict[str, Any]:
    scene = WORK / f"scene_{n}"
    if not (scene / "gt").exists():
        from l2m_sfm import sample_scene

        sample_scene.main({**MAP_VIEW, "num_views": n}, scene)
    out = WORK / f"map_n{n}_{mapper}"
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", "mapping", "--images", str(scene),
                    "--out", str(out), "--mapper", mapper], env=_env(), check=True)
    run = json.loads((out / "run.json").read_text())
    return {"part": "mapping", "images": n, "procs": 1, "mapper": mapper, **run}


def fit_growth(xs: list[float], ys: list[float]) -> dict[str, float] | None:
    """Least-squares fit of log t = log a + b log n: {"a", "b"} (None with fewer than 2 positive points)."""
    pts = [(x, y) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    b, log_a = np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)
    return {"a": float(np.exp(log_a)), "b": round(float(b), 3)}


def series(runs: list[dict]) -> dict[str, dict[str, Any]]:
    """Per curve ('stage, P proc' / 'mapping: mapper'): points (n, seconds) and the fitted growth."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for r in runs:
        if r["part"] == "matching":
            for stage, s in r["seconds"].items():
                curves.setdefault(f"{stage}, {r['procs']} proc", []).append((r["images"], s))
        else:
            curves.setdefault(f"mapping ({r['mapper']})", []).append((r["images"], r["seconds"]["mapping"]))
            curves.setdefault(f"database + verification ({r['mapper']} run)", []).append(
                (r["images"], r["seconds"]["database + verification"]))
    out = {}
    for name, pts in curves.items():
        pts = sorted(pts)
        out[name] = {"n": [p[0] for p in pts], "seconds": [p[1] for p in pts],
                     "fit": fit_growth([p[0] for p in pts], [p[1] for p in pts])}
    return out


def table(runs: list[dict]) -> str:
    lines = ["| part | images | procs | pairs | retrieval s | extraction s | matching s | map s | peak RSS MB "
             "(per stage, max over ranks) | HDF5 KB/pair |", "|" + "---|" * 10]
    for r in sorted(runs, key=lambda r: (r["part"], r.get("mapper", ""), r["images"], r["procs"])):
        s = r["seconds"]
        if r["part"] == "matching":
            rss = " / ".join(f"{v:.0f}" for v in r["peak_rss_mb"].values())
            lines.append(f"| matching | {r['images']} | {r['procs']} | {r['pairs']} | {s['retrieval pairs']:.1f} | "
                         f"{s['extraction']:.1f} | {s['matching']:.1f} | | {rss} | "
                         f"{r['matches_bytes'] / 1024 / max(1, r['pairs']):.1f} |")
        else:
            lines.append(f"| mapping ({r['mapper']}) | {r['images']} | 1 | {r['pairs']} | | | {s['matching']:.1f} | "
                         f"{s['mapping']:.1f} ({r['registered']} reg.) | {r['peak_rss_mb']:.0f} | "
                         f"{r['matches_bytes'] / 1024 / max(1, r['pairs']):.1f} |")
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for name, c in data["series"].items():
        ax = axes[1] if name.startswith(("mapping", "database")) else axes[0]
        line, = ax.plot(c["n"], c["seconds"], "o", label=None if c["fit"] else name)
        if c["fit"]:
            xs = np.geomspace(min(c["n"]), max(c["n"]), 30)
            ax.plot(xs, c["fit"]["a"] * xs ** c["fit"]["b"], "-", color=line.get_color(),
                    label=f"{name}: t ~ n^{c['fit']['b']:.2f}")
    for ax, title in zip(axes, ("single-view photos: retrieval, SIFT extraction and matching (retrieval:10)",
                                "rendered scene, exact matches, sequential:10: mapping")):
        ax.set(xscale="log", yscale="log", xlabel="images", ylabel="wall time (s)", title=title)
        ax.title.set_fontsize(9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("matching", "mapping", "all"), default="all")
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--map-sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--mappers", nargs="+", default=["incremental", "global"])
    parser.add_argument("--output", type=Path, default=RESULTS / "scaling.json")
    parser.add_argument("--redo", action="store_true", help="rerun runs already in the JSON")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--worker", choices=("matching", "mapping"), help=argparse.SUPPRESS)
    parser.add_argument("--images", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mapper", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "matching":
        matching_worker(args.images, args.out)
        return 0
    if args.worker == "mapping":
        mapping_worker(args.images, args.out, args.mapper)
        return 0

    data = json.loads(args.output.read_text()) if args.output.exists() else {"runs": []}
    runs: list[dict] = data["runs"]

    def have(part: str, n: int, key: Any) -> bool:
        return any(r["part"] == part and r["images"] == n and r.get("procs" if part == "matching" else "mapper") == key
                   for r in runs)

    def save() -> None:
        data.update(runs=runs, series=series(runs), machine={"cpus": os.cpu_count()},
                    commands=sorted(set(data.get("commands", [])) | {" ".join(["python", *sys.argv])}))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(data, indent=1))

    if not args.plot_only:
        todo = []
        if args.part in ("matching", "all"):
            todo += [("matching", n, p) for n in args.sizes for p in args.procs]
        if args.part in ("mapping", "all"):
            todo += [("mapping", n, m) for n in args.map_sizes for m in args.mappers]
        todo = [t for t in todo if args.redo or not have(*t)]
        if any(t[0] == "matching" for t in todo):
            run_matching(6, 1)  # warm-up, not recorded: the first run otherwise pays cold file caches
        for part, n, key in todo:
            print(f"== {part} n={n} {key}", flush=True)
            run = run_matching(n, key) if part == "matching" else run_mapping(n, key)
            runs[:] = [r for r in runs if not (r["part"] == part and r["images"] == n and
                                                r.get("procs" if part == "matching" else "mapper") == key)] + [run]
            save()
            print(json.dumps(run["seconds"]), flush=True)
    save()
    print(table(runs))
    for name, c in data["series"].items():
        if c["fit"]:
            print(f"{name}: t ~ {c['fit']['a']:.3g} * n^{c['fit']['b']:.2f}")
    print(f"-> {args.output}, {plot(data, args.output.with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
