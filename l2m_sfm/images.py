"""The listing stage of reconstruct, alone: ``python -m l2m_sfm.images --images DIR`` prints the images found and
every file skipped with its reason (reading itself lives in l2m.images, shared with training)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from l2m.images import list_images


def format_listing(root: Path, found: list[str], skipped: list[tuple[str, str]]) -> str:
    """Human-readable table of the images found and the files skipped with their reasons."""
    lines = [f"{len(found)} images found under {root}, {len(skipped)} files skipped"]
    for name in found:
        lines.append(f"  ok    {name}")
    for name, reason in skipped:
        lines.append(f"  SKIP  {name}: {reason}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="image folder (searched recursively)")
    args = parser.parse_args(argv)
    found, skipped = list_images(args.images)
    print(format_listing(args.images, found, skipped))
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
