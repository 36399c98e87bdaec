"""Command-line plumbing shared by the benchmark scripts in pipelines/ (arguments, matcher confs, one run).

Output layout under --output:
  predictions/<dataset>_<matcher>_<resize>_<hash>.h5   prediction cache (re-evaluation never re-matches)
  <matcher>/<protocol>/pairs.json, summary.json        per-pair results / numbers + full protocol + versions
  results_<protocol>.json                              all matchers of the run, and the printed table
  plots/<protocol>_recall.png, _scatter.png, worst/    figures
  results.html                                         one offline page: tables, recall curves, worst pairs
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from l2m.config import parse_overrides
from l2m.data.benchmark_pairs import BenchPair
from l2m_bench.run import (evaluate_cache, format_table, match_to_cache, pair_in_frame, pair_rng,
                               protocol_line, read_resized, summarize, summary_record, write_results)
from l2m_bench.files import PredictionCache, file_slug, package_versions, write_json
from l2m_sfm.matchers import matcher_identity
from l2m.evaluation.relpose import PRESETS, Protocol, estimate_relative_pose, get_protocol, select_indices

BASELINES = ("sift", "disk+lightglue", "aliked+lightglue", "xfeat+lighterglue")


def parse_dataset_args(description: str, data_help: str, meta_help: str, what: str,
                       argv: list[str] | None = None) -> argparse.Namespace:
    """CLI of a benchmark with a data root (`--data-root`) and an index (`--meta`) plus the common options."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, help=data_help)
    parser.add_argument("--meta", type=Path, help=meta_help)
    add_common_args(parser, default_protocol="loftr")
    args = parser.parse_args(argv)
    if args.meta is None and args.data_root is None:
        parser.error(f"give --data-root ({what}, and the index inside it) and/or --meta")
    if args.data_root is None and not (args.dry_run or args.eval_only):
        parser.error(f"--data-root (the test {what}) is needed unless --dry-run or --eval-only")
    return args


def add_common_args(parser: argparse.ArgumentParser, default_protocol: str) -> None:
    """Arguments every two-view benchmark script accepts."""
    from l2m_sfm.matchers import MATCHERS

    parser.add_argument("--output", type=Path, required=True, help="results folder (cache, JSON, plots)")
    parser.add_argument("--matchers", nargs="+", default=list(BASELINES), choices=sorted(MATCHERS),
                        metavar="NAME", help=f"matchers to run (default: the baselines); any of {sorted(MATCHERS)}")
    parser.add_argument("--matcher-conf", nargs="*", default=[], metavar="NAME.KEY=VALUE",
                        help="matcher conf overrides, e.g. l2m-tiny.weights=/path/ckpt.pt sift.max_keypoints=4096")
    parser.add_argument("--weights", type=Path, help="checkpoint for the L2M variants and loftr (sets <l2m-*>.weights, loftr.weights)")
    parser.add_argument("--protocol", default=default_protocol, choices=list(PRESETS),
                        help=f"pose-estimation preset (default {default_protocol})")
    parser.add_argument("--protocol-conf", nargs="*", default=[], metavar="KEY=VALUE",
                        help="protocol overrides, e.g. threshold=1.0 resize=long:1024 trials=5")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-pair RANSAC / shuffling RNGs")
    parser.add_argument("--limit", type=int, help="evaluate only the first N pairs (quick runs)")
    parser.add_argument("--dry-run", action="store_true", help="parse the index and print the protocol, no matching")
    parser.add_argument("--eval-only", action="store_true",
                        help="evaluate from the prediction cache only; missing pairs are an error")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default 2; under torchrun: the CPU cores split between the ranks)")
    parser.add_argument("--num-worst", type=int, default=3, help="match images of the N worst pairs per matcher")
    parser.add_argument("--no-plots", action="store_true")


def matcher_confs(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """name -> conf given to get_matcher, from --matcher-conf and --weights."""
    overrides = parse_overrides(args.matcher_conf)
    unknown = set(overrides) - set(args.matchers)
    if unknown:
        raise SystemExit(f"--matcher-conf names {sorted(unknown)} which are not in --matchers {args.matchers}")
    confs = {name: dict(overrides.get(name, {})) for name in args.matchers}
    if args.weights is not None:
        for name in confs:
            if name.startswith(("l2m", "loftr")):
                confs[name].setdefault("weights", str(args.weights))
    return confs


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text)


def _resolved_conf(matcher: Any, conf: Mapping[str, Any]) -> dict[str, Any]:
    resolved = getattr(matcher, "conf", None)
    return dict(resolved) if isinstance(resolved, Mapping) else dict(conf)


def run_two_view(args: argparse.Namespace, dataset: str, benchmark: str, pairs: list[BenchPair],
                 resolve_images: Callable[[list[BenchPair]], Mapping[str, Path]],
                 extra: Mapping[str, Any] | None = None, page_tables: Callable[..., Mapping[str, Any]] | None = None
                 ) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Match (cached), evaluate, write JSON, plots and results.html for every --matchers entry.

    `page_tables(rows, runs)` may add tables to results.html (title -> list of flat records).
    Returns (summary records, matcher -> per-pair records).
    """
    protocol = get_protocol(args.protocol, dataset, parse_overrides(args.protocol_conf))
    if args.limit is not None:
        pairs = pairs[:args.limit]
    confs = matcher_confs(args)
    print(f"{benchmark}: {len(pairs)} pairs")
    print(protocol_line(protocol, args.seed))
    if args.dry_run:
        for name, conf in confs.items():
            print(f"  matcher {name}: conf {conf}")
        print("dry run: index parsed, protocol resolved; nothing matched or written")
        return [], {}
    from l2m_sfm.shards import setup

    sh = setup(args.device)  # torchrun: matching sharded over ranks, rank 0 evaluates
    try:
        import torch
        if args.threads is not None or not sh.distributed:
            torch.set_num_threads(max(1, args.threads or 2))
    except ImportError:
        pass
    out = Path(args.output)
    image_paths = None if args.eval_only else resolve_images(pairs)
    rows, runs, caches = [], {}, {}
    for name, conf in confs.items():
        identity = matcher_identity(name, conf)  # weight file hashes etc.: a retrained checkpoint is a new cache
        cache = PredictionCache.for_matcher(out / "predictions", benchmark, name, conf, protocol.resize, identity)
        resolved: dict[str, Any] = dict(conf)
        if args.eval_only:
            missing = cache.missing([(p.name0, p.name1) for p in pairs])
            if missing:
                others = sorted(p.name for p in cache.path.parent.glob(f"*_{file_slug(name)}_*.h5") if p != cache.path)
                hint = (f"; caches of {name} with other resize rules / confs: {others} (reuse one with "
                        f"--protocol-conf resize=<its rule>)" if others else "")
                raise SystemExit(f"--eval-only: {len(missing)} pairs of {name} are not in {cache.path} "
                                 f"(first: {missing[0]}); run without --eval-only to match them{hint}")
        else:
            holder: dict[str, Any] = {}

            def factory(name: str = name, conf: dict = conf) -> Any:
                from l2m_sfm.matchers import get_matcher
                holder["m"] = get_matcher(name, conf, sh.device(args.device))
                return holder["m"]

            t0 = time.time()
            n = match_to_cache(factory, pairs, image_paths, protocol.resize, cache, progress=sh.is_main,
                               shards=sh)
            if not sh.is_main:
                continue
            if n:
                print(f"  {name}: matched {n} pairs in {time.time() - t0:.1f} s -> {cache.path}")
                cache.set_attr("matcher_conf_resolved", _resolved_conf(holder["m"], conf))
        if cache.path.exists():  # the conf the matcher actually ran with (its defaults filled in)
            stored = cache.file_meta().get("matcher_conf_resolved")
            resolved = json.loads(stored) if stored else resolved
        records = evaluate_cache(pairs, cache, protocol, args.seed)
        summary = summary_record(summarize(records), benchmark=benchmark, matcher=name, matcher_conf=resolved,
                                 protocol=protocol, seed=args.seed, cache=cache,
                                 extra={"limit": args.limit, "matcher_identity": identity, **dict(extra or {})})
        write_results(out / _slug(name) / protocol.name, records, summary)
        rows.append(summary)
        runs[name] = records
        caches[name] = cache
    if not sh.is_main:
        print(f"[rank {sh.rank}/{sh.world}] matching shards done; rank 0 evaluates", flush=True)
        return [], {}
    table = format_table(rows, f"{benchmark} -- {protocol.name}")
    print(table)
    print(protocol_line(protocol, args.seed))
    write_json({"benchmark": benchmark, "protocol": protocol.to_dict(), "seed": args.seed,
                "versions": package_versions(), "table": table.splitlines(), "results": rows},
               out / f"results_{protocol.name}.json")
    if not args.no_plots and rows:
        write_plots(out / "plots", benchmark, protocol, runs, caches, pairs, image_paths, args.num_worst,
                    args.seed)
    if rows:
        from l2m_bench.page import write_two_view_page

        page = write_two_view_page(out, benchmark, protocol_line(protocol, args.seed), rows, runs,
                                   None if args.no_plots else out / "plots", protocol.name, args.num_worst,
                                   page_tables(rows, runs) if page_tables else None)
        print(f"results page: {page}")
    return rows, runs


def write_plots(plot_dir: Path, benchmark: str, protocol: Protocol, runs: Mapping[str, list[dict[str, Any]]],
                caches: Mapping[str, PredictionCache], pairs: list[BenchPair],
                image_paths: Mapping[str, Path] | None, num_worst: int, seed: int = 0) -> list[Path]:
    """Recall curves + error scatter of all matchers, and worst-pair match images (if images are at hand)."""
    from l2m_bench import plots as bench_plots

    title = f"{benchmark} | {protocol.name}: {protocol.estimator} {protocol.threshold} px ({protocol.threshold_frame})"
    paths = [bench_plots.plot_recall_curves(runs, plot_dir / f"{protocol.name}_recall.png", title=title),
             bench_plots.plot_error_scatter(runs, plot_dir / f"{protocol.name}_scatter.png", title=title)]
    if image_paths is None or num_worst <= 0:
        return paths
    by_key = {(p.name0, p.name1): p for p in pairs}
    for name, records in runs.items():
        cache = caches[name]

        def load(r: dict[str, Any], cache: PredictionCache = cache) -> tuple:
            pair = by_key[(r["name0"], r["name1"])]
            cached = cache.read(pair.name0, pair.name1)
            keep = select_indices(cached.scores, protocol)
            k0, k1, K0, K1 = pair_in_frame(pair, cached, protocol)
            est = estimate_relative_pose(k0[keep], k1[keep], K0, K1, protocol,
                                         pair_rng(seed, pair.name0, pair.name1))
            im0 = read_resized(image_paths[pair.name0], protocol.resize)[0]
            im1 = read_resized(image_paths[pair.name1], protocol.resize)[0]
            inliers = est[2] if est is not None else np.zeros(len(keep), bool)
            return im0, im1, cached.keypoints0[keep], cached.keypoints1[keep], inliers

        paths += bench_plots.plot_worst_pairs(name, records, load, plot_dir / "worst" / protocol.name, num_worst)
    return paths
