"""Seconds per pair and peak memory of each L2M variant on this machine (random weights; speed only).

    python benchmarks/model_speed.py [--variants l2m-tiny l2m-vitb l2m++] [--threads 2] [--out model_speed.json]

Each variant runs in its own subprocess (so peak RSS is per variant) on a 10-image exhaustive set of 640×480
synthetic images (45 pairs; `--max-pairs` caps the slow variants), at its default resolution, once without and
once with the per-image feature cache. Prints a table and writes JSON (wall s/pair, CPU s/pair, peak RSS MB,
load average during the run, since the CPU may be shared).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def _run_variant(variant: str, threads: int, max_pairs: int, n_images: int, coarse_res: int | None = None,
                 upsample_res: int | None = None) -> dict:
    import numpy as np
    import torch

    from l2m.models.zoo import build_model, resolve_variant

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    import cv2

    images = []
    for _ in range(n_images):
        base = rng.integers(0, 255, (60, 80, 3)).astype(np.float32)
        images.append(cv2.resize(base, (640, 480), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8))
    pairs = list(itertools.combinations(range(n_images), 2))[:max_pairs]
    defaults = resolve_variant(variant)[1]
    res = {"variant": variant, "threads": threads, "pairs": len(pairs), "images": n_images,
           "coarse_res": coarse_res or defaults.get("coarse_res"),
           "upsample_res": (upsample_res or None) if upsample_res is not None else defaults.get("upsample_res"),
           "upsample_levels": defaults.get("upsample_levels")}
    for cached in (False, True):
        conf = {"cache_size": n_images if cached else 0, **({"coarse_res": coarse_res} if coarse_res else {}),
                **({"upsample_res": upsample_res or None} if upsample_res is not None else {})}
        model = build_model(variant, weights="random", conf=conf)
        model.match(images[0], images[1])  # warm-up (not counted)
        model.cache.clear()
        load0 = os.getloadavg()[0]
        t, c = time.perf_counter(), time.process_time()
        for i, j in pairs:
            out = model.match(images[i], images[j], *((str(i), str(j)) if cached else (None, None)))
            model.sample(out, generator=torch.Generator().manual_seed(0))
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        key = "cache" if cached else "no_cache"
        res[key] = {"s_per_pair": wall / len(pairs), "cpu_s_per_pair": cpu / len(pairs),
                    "loadavg": (load0 + os.getloadavg()[0]) / 2}
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    coarse = getattr(model.encoder, "_vit", None)
    res["frozen_vit_params_m"] = sum(p.numel() for p in coarse.parameters()) / 1e6 if coarse is not None else 0.0
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variants", nargs="+", default=["l2m-tiny", "l2m-tiny-fast", "l2m-vitb", "l2m++"],
                   help="variants or presets of l2m.models.zoo")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--max-pairs", type=int, default=None, help="default: all for l2m-tiny, 3 for ViT variants")
    p.add_argument("--coarse-res", type=int, default=None, help="override the variants' coarse resolution")
    p.add_argument("--upsample-res", type=int, default=None, help="override the upsampling pass (0: none)")
    p.add_argument("--out", type=Path, default=Path("model_speed.json"))
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        print(json.dumps(_run_variant(args._child, args.threads, args.max_pairs, args.images,
                                      args.coarse_res, args.upsample_res)))
        return
    rows = []
    for v in args.variants:
        mp = args.max_pairs or (10_000 if v.startswith("l2m-tiny") else 3)
        cmd = [sys.executable, __file__, "--_child", v, "--threads", str(args.threads), "--images", str(args.images),
               "--max-pairs", str(mp)] + (["--coarse-res", str(args.coarse_res)] if args.coarse_res else []) \
            + (["--upsample-res", str(args.upsample_res)] if args.upsample_res is not None else [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{v}: failed\n{r.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    hdr = f"{'variant':10} {'res':>9} {'pairs':>5} {'s/pair':>7} {'cpu/pair':>8} {'s/pair cached':>13} " \
          f"{'cpu cached':>10} {'peak MB':>8} {'load':>5}"
    print(hdr)
    for r in rows:
        res = f"{r['coarse_res']}/{r['upsample_res'] or '-'}"
        print(f"{r['variant']:10} {res:>9} {r['pairs']:>5} {r['no_cache']['s_per_pair']:7.2f} "
              f"{r['no_cache']['cpu_s_per_pair']:8.2f} {r['cache']['s_per_pair']:13.2f} "
              f"{r['cache']['cpu_s_per_pair']:10.2f} {r['peak_rss_mb']:8.0f} {r['cache']['loadavg']:5.1f}")
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(rows, indent=2))
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
