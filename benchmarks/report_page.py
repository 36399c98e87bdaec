"""Size and build time of report.html for reconstruct output folders (rebuilt from what they hold); table + JSON.

    python benchmarks/report_page.py OUT [OUT ...] [--repeat 3] [--output benchmarks/results/report_page.json]

Build time: median over --repeat in-process rebuilds (l2m_sfm.report_html.write_html: read report.json and the
model, per-image reprojection errors, point subsample, page assembly and writing), without Python start-up.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from l2m_sfm import report_html  # noqa: E402


def measure(output: Path, repeat: int) -> dict:
    """Page size (bytes), median build seconds, images and points (total and shown) of one output folder."""
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        path = report_html.write_html(output)
        seconds.append(time.perf_counter() - t0)
    html = path.read_text()
    shown = json.loads(html.split('id="scene-data">')[1].split("</script>")[0]) if 'id="scene-data"' in html else {}
    return {"output": str(output), "bytes": path.stat().st_size, "seconds": statistics.median(seconds),
            "images": html.split('<table id="images">')[1].split("</table>")[0].count("<tr>") - 1,
            "points": shown.get("num_points"), "points_shown": shown.get("num_shown")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", nargs="+", type=Path, help="reconstruct --output folders")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = [measure(o, args.repeat) for o in args.outputs]
    print(f"{'output':<40} {'images':>6} {'points':>9} {'shown':>9} {'MB':>6} {'build s':>8}")
    for r in rows:
        print(f"{r['output'][-40:]:<40} {r['images']:>6} {r['points'] or 0:>9} {r['points_shown'] or 0:>9} "
              f"{r['bytes'] / 1e6:>6.2f} {r['seconds']:>8.2f}")
    if args.output:
        args.output.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
