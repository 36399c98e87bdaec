"""What a reconstruction run leaves for people: report.json contents, match pictures, point colours, and
OUT/report.html (l2m_sfm.report_html), which this module's command line rebuilds:

    python -m l2m_sfm.report OUT [--gt GT_MODEL] [--max-points N]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from l2m.config import write_conf


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide the result."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("l2m-sfm", "pycolmap", "torch", "numpy", "h5py", "kornia", "opencv-python-headless"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def color_points(reconstruction: Any, image_dir: Path) -> None:
    """Colour 3D points from the images as l2m_sfm reads them (EXIF orientation applied, unlike COLMAP)."""
    from l2m.images import ImageReadError, read_image

    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for image_id in reconstruction.reg_image_ids():
        image = reconstruction.images[image_id]
        try:
            rgb = read_image(image_dir / image.name)
        except ImageReadError:
            continue
        h, w = rgb.shape[:2]
        for p in image.points2D:
            if p.has_point3D():
                x = min(max(int(p.xy[0]), 0), w - 1)  # COLMAP convention: pixel (i, j) covers [i, i+1)
                y = min(max(int(p.xy[1]), 0), h - 1)
                sums[p.point3D_id] = sums.get(p.point3D_id, 0) + rgb[y, x].astype(np.float64)
                counts[p.point3D_id] = counts.get(p.point3D_id, 0) + 1
    for pid, total in sums.items():
        reconstruction.points3D[pid].color = np.round(total / counts[pid]).astype(np.uint8)


def draw_match_pictures(image_dir: Path, pairs: list[tuple[str, str]], features_path: Path,
                        matches_path: Path, output: Path, count: int) -> list[str]:
    """JPEG pictures of the matches of the `count` pairs with most matches (from the HDF5 files)."""
    import cv2

    from l2m.viz import draw_matches
    from l2m_sfm.h5io import H5LookupError, read_keypoints, read_matches
    from l2m.images import ImageReadError, read_image

    if count <= 0:
        return []
    found = []
    for a, b in pairs:
        try:
            m, _ = read_matches(matches_path, a, b)
        except H5LookupError:
            continue
        found.append((len(m), a, b, m))
    found.sort(key=lambda x: -x[0])
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for n, a, b, m in found[:count]:
        try:
            ka, kb = read_keypoints(features_path, a), read_keypoints(features_path, b)
            pic = draw_matches(read_image(image_dir / a), read_image(image_dir / b), ka[m[:, 0]], kb[m[:, 1]])
        except (H5LookupError, ImageReadError):
            continue
        path = output / f"{Path(a).stem}__{Path(b).stem}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(pic, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        written.append(path.name)
    return written


def failure_message(report: dict[str, Any]) -> str:
    """Why no model came out, what was already tried, and only the remedies that were not."""
    db = report.get("database", {})
    conf = report.get("config", {})
    kps = list(db.get("keypoints_per_image", {}).values())
    kp_text = f"keypoints per image min {min(kps)} / median {int(np.median(kps))}" if kps else "no keypoints"
    text = (f"No model could be reconstructed from {report['images']['found']} images: "
            f"{db.get('verified_pairs', 0)} of {db.get('matched_pairs', 0)} matched pairs passed geometric "
            f"verification (median {db.get('inliers_per_pair_median', 0):.0f} inliers), {kp_text}. ")
    tried, advice = _tried_and_advice(report, conf)
    if tried:
        text += "Tried: " + "; ".join(tried) + ". "
    if not db.get("verified_pairs"):
        advice.insert(0, "check that the photos overlap (no two of them show the same surface)")
    return text + "Try: " + ", ".join(advice) + ". Diagnostics are in report.json."


def _tried_and_advice(report: dict[str, Any], conf: dict[str, Any]) -> tuple[list[str], list[str]]:
    pairs = report.get("pairs", {}).get("method") or conf.get("pairs") or ""
    matcher = (conf.get("matcher") or {}).get("name") or "?"
    camera = conf.get("camera") or {}
    models = report.get("models") or []
    tried = [f"{pairs} pairs", f"matcher {matcher}"]
    mappers = {}
    for m in models:
        mappers.setdefault(m.get("mapper", "?"), set()).add(m.get("attempt", 0))
    if mappers:
        tried.append(", ".join(f"{k} mapping" + (f" ({len(v)} seeds)" if len(v) > 1 else "")
                               for k, v in mappers.items()))
    if any(m.get("focal_priors") is False for m in models):
        tried.append("mapping without the EXIF focal priors")
    advice = []
    if pairs != "exhaustive":
        advice.append("exhaustive pairs (--pairs exhaustive)")
    advice.append(f"another --matcher (e.g. {'disk+lightglue' if matcher == 'sift' else 'sift'})")
    if camera.get("mode") != "single":
        advice.append("--camera-mode single when one camera took all photos")
    if not camera.get("intrinsics"):
        advice.append("--intrinsics if you know them")
    if "global" not in mappers:
        advice.append("--mapper global")
    return tried, advice


def write_report(report: dict[str, Any], output: Path) -> None:
    from l2m_sfm.evaluate import to_json

    write_conf(to_json(report), output / "report.json")
    write_html_report(output)


def write_html_report(output: Path, gt: Path | None = None, max_points: int | None = None) -> Path:
    """OUT/report.html from what OUT holds; with `gt` the model is evaluated first (OUT/eval.json)."""
    from l2m_sfm import report_html

    t0 = time.perf_counter()
    evaluation = None
    if gt is not None:
        from l2m_sfm import evaluate

        import pycolmap

        if not (output / "sfm" / "images.bin").is_file():
            raise SystemExit(f"{output}/sfm holds no model to evaluate against {gt}")
        evaluation = evaluate.to_json(evaluate.evaluate(pycolmap.Reconstruction(str(output / "sfm")),
                                                        evaluate._load(gt, "--gt")))
        write_conf(evaluation, output / "eval.json")
    path = report_html.write_html(output, evaluation, max_points or report_html.DEFAULT_MAX_POINTS)
    print(f"[report.html] {time.perf_counter() - t0:.1f} s, {path.stat().st_size / 1e6:.1f} MB -> {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild OUT/report.html of a reconstruct output folder.")
    parser.add_argument("output", type=Path, help="the reconstruct --output folder (holds report.json)")
    parser.add_argument("--gt", type=Path, help="ground-truth COLMAP model: evaluate and add the per-image errors")
    parser.add_argument("--max-points", type=int, help="point budget of the 3D view (default 150000)")
    args = parser.parse_args(argv)
    try:
        write_html_report(args.output, args.gt, args.max_points)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
