"""MegaDepth-1500 relative-pose benchmark (LoFTR split): AUC@5/10/20 and mAA under a named protocol.

    python pipelines/megadepth1500.py --data-root data/megadepth/test --output outputs/md1500 \
        --matchers sift aliked+lightglue --protocol loftr
    python pipelines/megadepth1500.py --meta ../shared/data/benchmark_meta/megadepth1500 --dry-run --output /tmp/x

--data-root holds the test images (`Undistorted_SfM/<scene>/images/*.jpg`); --meta the scene-info folder with
megadepth_test_1500.txt and its 5 npz files (default: searched in --data-root). See datasets/README.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from l2m_bench.cli import parse_dataset_args, run_two_view  # noqa: E402
from l2m.data.benchmark_pairs import (MEGADEPTH_LIST, MEGADEPTH_META_DIRS, BenchmarkDataError,  # noqa: E402
                                    find_meta_dir, load_megadepth1500, megadepth_image_candidates,
                                    resolve_images)

BENCHMARK = "megadepth1500"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parse_dataset_args(__doc__, "folder with the MegaDepth-1500 test images",
                              "folder with megadepth_test_1500.txt + the 5 scene-info npz", "images", argv)


def main(argv: list[str] | None = None) -> tuple[list[dict], dict]:
    args = parse_args(argv)
    try:
        meta = args.meta if args.meta is not None else find_meta_dir(args.data_root, MEGADEPTH_LIST,
                                                                     MEGADEPTH_META_DIRS)
        pairs = load_megadepth1500(meta)
        return run_two_view(args, BENCHMARK, BENCHMARK, pairs,
                            lambda ps: resolve_images(ps, lambda n: megadepth_image_candidates(args.data_root, n),
                                                      "MegaDepth-1500"),
                            extra={"meta": str(meta), "data_root": str(args.data_root)})
    except BenchmarkDataError as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()
