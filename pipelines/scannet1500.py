"""ScanNet-1500 relative-pose benchmark (SuperGlue split, LoFTR index): AUC@5/10/20 and mAA.

    python pipelines/scannet1500.py --data-root data/scannet/test --meta assets/scannet_test_1500 \
        --output outputs/sn1500 --matchers sift --protocol loftr

--data-root holds the 640x480 test frames (`<scene>/color/<frame>.jpg`, LoFTR layout; the ScanNet layout
`scans_test/<scene>/sens/frame-%06d.color.jpg` also works); --meta holds test.npz + intrinsics.npz
(+ scannet_test.txt). K of intrinsics.npz refers to 640x480 and is rescaled if the frames are larger.
See datasets/README.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from l2m_bench.cli import parse_dataset_args, run_two_view  # noqa: E402
from l2m.data.benchmark_pairs import (SCANNET_META_DIRS, BenchmarkDataError, find_meta_dir,  # noqa: E402
                                    load_scannet1500, resolve_images, scannet_image_candidates)

BENCHMARK = "scannet1500"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parse_dataset_args(__doc__, "folder with the ScanNet-1500 test frames",
                              "folder with test.npz and intrinsics.npz", "frames", argv)


def main(argv: list[str] | None = None) -> tuple[list[dict], dict]:
    args = parse_args(argv)
    try:
        meta = args.meta if args.meta is not None else find_meta_dir(args.data_root, "test.npz", SCANNET_META_DIRS)
        pairs = load_scannet1500(meta)
        return run_two_view(args, BENCHMARK, BENCHMARK, pairs,
                            lambda ps: resolve_images(ps, lambda n: scannet_image_candidates(args.data_root, n),
                                                      "ScanNet-1500"),
                            extra={"meta": str(meta), "data_root": str(args.data_root)})
    except BenchmarkDataError as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()
