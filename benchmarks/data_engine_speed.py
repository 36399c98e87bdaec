"""Samples per second of the on-the-fly synthetic-pair generator on this machine (not a test).

    python benchmarks/data_engine_speed.py [--images DIR] [--sizes 256 512] [--n 6] [--threads 2] [--json OUT]

Times SyntheticPairs.__getitem__ (crop, pseudo-depth or disparity, lift, pose, render, Telea inpaint, training
dict) per size, with and without relighting + sky masking, and prints a table (wall time and CPU time,
which is less sensitive to other jobs on a shared machine); writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from l2m.data.synthetic import SyntheticPairs

DEFAULT_IMAGES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "singleview" / "images"


def run(images: list[Path], size: int, n: int, extra: dict) -> dict:
    ds = SyntheticPairs(images, conf=dict(extra, size=size), views_per_image=1, seed=0)
    ds[0]  # warm-up (imports, caches)
    t, c = time.perf_counter(), time.process_time()
    for i in range(1, n + 1):
        ds[i % len(ds)]
    dt, cpu = (time.perf_counter() - t) / n, (time.process_time() - c) / n
    # CPU seconds (all threads) per sample: robust to other jobs sharing the machine, unlike wall time
    return {"size": size, "seconds_per_sample": dt, "samples_per_second": 1 / dt, "cpu_seconds_per_sample": cpu,
            "options": extra}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=Path, default=Path(os.environ.get("L2M_SHARED_DATA", DEFAULT_IMAGES.parent.parent))
                   / "singleview" / "images")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--n", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/data_engine_speed.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = sorted(args.images.glob("*.jpg"))[:: 7][: args.n + 1]
    if not images:
        raise SystemExit(f"No .jpg images in {args.images}; pass --images DIR")
    rows = []
    for size in args.sizes:
        for extra in ({}, {"relight": {"enabled": True}, "sky": {"enabled": True}}):
            rows.append(run(images, size, args.n, extra))
            r = rows[-1]
            print(f"{size:>5}  {'relight+sky' if extra else 'plain':<12} {r['seconds_per_sample']:.3f} s/sample "
                  f"{r['samples_per_second']:.2f} samples/s  {r['cpu_seconds_per_sample']:.3f} CPU-s/sample", flush=True)
    out = {"threads": args.threads, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "load_avg_at_end": os.getloadavg(), "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
