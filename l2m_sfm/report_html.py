"""OUT/report.html: one offline page to look at a reconstruction (3D view, images, timings, matches, evaluation).

Built only from what `reconstruct` leaves in OUT (report.json, sfm/, matches/*.jpg and, when present and newer
than the model, eval.json from `l2m_sfm.evaluate --output OUT/eval.json` or `l2m_sfm.report OUT --gt GT`), so
`python -m l2m_sfm.report OUT` rebuilds it at any time. Points above the budget are subsampled at random
(seed 0), and the page says so; the budget also keeps the file under `max_bytes`.
"""
from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from l2m_sfm.html_page import esc, fmt, json_script, page, picture, plotly_script, table, write_page

DEFAULT_MAX_POINTS = 150_000
MAX_BYTES = 10_000_000  # the whole page
BYTES_PER_POINT = 20  # float32 x, y, z + uint8 r, g, b, base64: 15 * 4 / 3
MIN_POINTS = 1000  # shown whatever the byte budget
FRUSTUM_COLOR = "#d62728"

VIEW_JS = """
(function () {
  const d = JSON.parse(document.getElementById('scene-data').textContent);
  function bytes(s) { const b = atob(s), u = new Uint8Array(b.length);
    for (let i = 0; i < b.length; i++) u[i] = b.charCodeAt(i); return u; }
  function floats(s) { return new Float32Array(bytes(s).buffer); }
  const rgb = bytes(d.points.rgb), n = rgb.length / 3, colors = new Array(n);
  for (let i = 0; i < n; i++) colors[i] = 'rgb(' + rgb[3 * i] + ',' + rgb[3 * i + 1] + ',' + rgb[3 * i + 2] + ')';
  const axis = (range) => ({visible: false, range: range});
  const traces = [
    {type: 'scatter3d', mode: 'markers', name: n + ' points', x: floats(d.points.x), y: floats(d.points.y),
     z: floats(d.points.z), marker: {size: d.point_size, color: colors, line: {width: 0}}, hoverinfo: 'skip'},
    {type: 'scatter3d', mode: 'lines', name: 'cameras', x: d.frusta.x, y: d.frusta.y, z: d.frusta.z,
     text: d.frusta.text, line: {color: d.color, width: 3}, hovertemplate: '%{text}<extra></extra>'},
    {type: 'scatter3d', mode: 'markers', name: 'camera centres', x: d.centers.x, y: d.centers.y, z: d.centers.z,
     text: d.centers.text, marker: {size: 3, color: d.color}, hovertemplate: '%{text}<extra></extra>',
     showlegend: false}];
  const layout = {margin: {l: 0, r: 0, t: 0, b: 0}, paper_bgcolor: '#ffffff', legend: {x: 0, y: 1},
    scene: {aspectmode: 'manual', aspectratio: d.view.aspect, bgcolor: '#ffffff',
            xaxis: axis(d.view.range[0]), yaxis: axis(d.view.range[1]), zaxis: axis(d.view.range[2]),
            camera: {up: d.view.up, eye: d.view.eye, center: {x: 0, y: 0, z: 0}}}};
  (window.plots = window.plots || []).push(
    Plotly.newPlot('view3d', traces, layout, {displaylogo: false, responsive: true}));
})();
"""


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


def image_rows(model: Any | None, names: list[str], keypoints: dict[str, int]) -> list[dict[str, Any]]:
    """Per image: registered, keypoints, observations (2D points with a 3D point), mean reprojection error (px,
    COLMAP camera model, points behind the camera ignored) and camera."""
    by_name = {im.name: im for im in model.images.values()} if model is not None else {}
    registered = {model.images[i].name for i in model.reg_image_ids()} if model is not None else set()
    rows = []
    for name in names:
        row: dict[str, Any] = {"name": name, "registered": name in registered, "keypoints": keypoints.get(name),
                               "observations": 0, "reprojection_error_px": None, "camera": ""}
        image = by_name.get(name)
        if image is not None:
            cam = model.cameras[image.camera_id]
            row["camera"] = (f"#{image.camera_id} {cam.model.name} {cam.width}x{cam.height} "
                             f"f={cam.mean_focal_length():.1f}")
        if image is not None and name in registered:
            obs = image.get_observation_points2D()
            row["observations"] = len(obs)
            if obs:
                xy = np.array([p.xy for p in obs])
                xyz = np.array([model.points3D[p.point3D_id].xyz for p in obs])
                T = image.cam_from_world().matrix()
                cam_pts = xyz @ T[:, :3].T + T[:, 3]
                front = cam_pts[:, 2] > 0
                if front.any():
                    proj = model.cameras[image.camera_id].img_from_cam(cam_pts[front], check_cheirality=False)
                    row["reprojection_error_px"] = float(np.linalg.norm(proj - xy[front], axis=1).mean())
        rows.append(row)
    return rows


def scene_payload(model: Any, max_points: int, seed: int = 0) -> dict[str, Any]:
    """Points (subsampled to max_points, seed fixed), camera frusta and an initial view, for VIEW_JS."""
    ids = np.array(sorted(model.point3D_ids()), np.int64)
    total = len(ids)
    if total > max_points:  # choose first: reading a point from pycolmap costs more than the choice
        ids = ids[np.sort(np.random.default_rng(seed).choice(total, max_points, replace=False))]
    points = [model.point3D(int(i)) for i in ids]
    xyz = np.array([p.xyz for p in points], np.float64).reshape(-1, 3)
    rgb = np.array([p.color for p in points], np.uint8).reshape(-1, 3)
    images = [model.images[i] for i in sorted(model.reg_image_ids(), key=lambda i: model.images[i].name)]
    centers = np.array([im.projection_center() for im in images]).reshape(-1, 3)
    rotations = np.array([im.cam_from_world().rotation.matrix() for im in images]).reshape(-1, 3, 3)
    # view box: the bulk of the points (0.5-99.5 %) and every camera, so a few far points do not shrink the scene
    bulk = np.concatenate([np.percentile(xyz, [0.5, 99.5], axis=0) if len(xyz) else centers[:2], centers])
    lo, hi = bulk.min(0), bulk.max(0)
    pad = 0.05 * max(float((hi - lo).max()), 1e-9)
    lo, hi = lo - pad, hi + pad
    # frustum depth: 6 % of the scene, less when cameras stand closer than that (a video's frames)
    diag = float(np.linalg.norm(hi - lo))
    gaps = np.linalg.norm(centers[:, None] - centers[None], axis=2) + np.eye(len(centers)) * 1e18
    size = min(0.06 * diag, max(1.5 * float(np.median(gaps.min(1))) if len(centers) > 1 else diag, 0.01 * diag))
    fx, fy, fz, text = [], [], [], []
    for im, c, R in zip(images, centers, rotations):
        cam = model.cameras[im.camera_id]
        w, h = cam.width, cam.height
        # pinhole rays through the image corners: undistorting a far corner can diverge (NaN) when a camera's
        # radial distortion is large, as a 50 MP photo's estimate was; a frustum only needs the shape
        corners_px = np.array([[0.0, 0.0, 1.0], [w, 0.0, 1.0], [w, h, 1.0], [0.0, h, 1.0]])
        rays = (corners_px @ np.linalg.inv(cam.calibration_matrix()).T)[:, :2]
        corners = c + (np.hstack([rays, np.ones((4, 1))]) * size / max(1.0, float(np.abs(rays).max()))) @ R
        path = [c, corners[0], corners[1], corners[2], corners[3], corners[0], None, c, corners[1], None,
                c, corners[2], None, c, corners[3], None]
        for p in path:
            for out, k in ((fx, 0), (fy, 1), (fz, 2)):
                out.append(None if p is None else round(float(p[k]), 6))
            text.append(im.name)
    up = -rotations[:, 1].mean(0) if len(rotations) else np.array([0.0, -1.0, 0.0])
    up /= max(np.linalg.norm(up), 1e-9)
    forward = rotations[:, 2].mean(0) if len(rotations) else np.zeros(3)
    right = rotations[:, 0].mean(0) if len(rotations) else np.zeros(3)
    # from above and behind the cameras, a little to the side so a row of cameras does not hide itself
    eye = 0.7 * up - 0.6 * forward + 0.4 * right
    span = hi - lo
    aspect = span / span.max()
    eye = 1.2 * eye / max(np.linalg.norm(eye), 1e-9)
    return {
        "points": {"x": _b64(xyz[:, 0].astype(np.float32)), "y": _b64(xyz[:, 1].astype(np.float32)),
                   "z": _b64(xyz[:, 2].astype(np.float32)), "rgb": _b64(rgb)},
        "num_points": total, "num_shown": len(xyz), "point_size": 1.5 if len(xyz) > 20000 else 2.5,
        "frusta": {"x": fx, "y": fy, "z": fz, "text": text},
        "centers": {"x": centers[:, 0].round(6).tolist(), "y": centers[:, 1].round(6).tolist(),
                    "z": centers[:, 2].round(6).tolist(), "text": [im.name for im in images]},
        "color": FRUSTUM_COLOR,
        "view": {"range": [[float(a), float(b)] for a, b in zip(lo, hi)],
                 "aspect": dict(zip("xyz", map(float, aspect))), "up": dict(zip("xyz", map(float, up))),
                 "eye": dict(zip("xyz", map(float, eye)))},
    }


def read_evaluation(output: Path) -> dict[str, Any] | None:
    """OUT/eval.json when it is newer than the model (an older one belongs to an earlier run)."""
    path, model = output / "eval.json", output / "sfm" / "images.bin"
    if not path.is_file() or (model.is_file() and path.stat().st_mtime < model.stat().st_mtime):
        return None
    return json.loads(path.read_text())


def _evaluation_section(ev: dict[str, Any]) -> str:
    auc = dict(sorted((ev.get("auc") or {}).items(), key=lambda kv: float(kv[0].lstrip("@"))))
    auc_text = " / ".join(fmt(100 * v, 1) if v is not None else "–" for v in auc.values())
    facts = (f"registered <b>{ev.get('num_registered')}/{ev.get('num_gt_images')}</b> ground-truth images · "
             f"median camera-centre error <b>{esc(fmt(ev.get('median_center_error'), 4))}</b> (GT units) · "
             f"median rotation error <b>{esc(fmt(ev.get('median_rotation_error_deg'), 3))}°</b> · "
             f"relative-pose AUC {esc('/'.join(auc))}° over {ev.get('num_pairs')} pairs: <b>{esc(auc_text)} %</b>")
    rows = ev.get("per_image", [])
    return (f'<h2 id="evaluation">Evaluation against ground truth</h2><p class="facts">{facts}</p>'
            + table(["image", "registered", "camera-centre error (GT units)", "rotation error (°)"],
                    [[r["name"], r["registered"], r.get("center_error"), r.get("rotation_error_deg")] for r in rows],
                    "evaluation-table", [not r["registered"] for r in rows], digits=4)
            + '<p class="note">After a robust Sim(3) alignment of the camera centres (l2m_sfm.evaluate).</p>')


def _names(report: dict[str, Any]) -> list[str]:
    kp = (report.get("database") or {}).get("keypoints_per_image") or {}
    m = report.get("model") or {}
    return sorted(set(kp) | set(m.get("registered_names", [])) | set(m.get("unregistered_names", [])))


def _facts(report: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The headline numbers of the run and its error, if it failed."""
    model_info, db = report.get("model") or None, report.get("database") or {}
    pairs = report.get("pairs") or {}
    facts = [("images found", (report.get("images") or {}).get("found", len(rows))),
             ("registered", sum(r["registered"] for r in rows)),
             ("unregistered", sum(not r["registered"] for r in rows)),
             ("skipped files", len((report.get("images") or {}).get("skipped", [])))]
    if model_info:
        facts += [("3D points", model_info["points3D"]),
                  ("mean track length", f"{model_info['mean_track_length']:.2f}"),
                  ("mean reprojection error", f"{model_info['mean_reprojection_error_px']:.3f} px")]
    facts += [("matcher", ((report.get("config") or {}).get("matcher") or {}).get("name")),
              ("pairs", f"{pairs.get('num_pairs', '–')} ({pairs.get('method')})"),
              ("verified pairs", db.get("verified_pairs", "–"))]
    html = '<p class="facts">' + "".join(f"<span>{esc(k)} <b>{esc(v)}</b></span>" for k, v in facts) + "</p>"
    return html + (f'<p class="error">{esc(report["error"])}</p>' if report.get("error") else "")


def _sections(output: Path, report: dict[str, Any], rows: list[dict[str, Any]],
              evaluation: dict[str, Any] | None) -> list[str]:
    """Everything below the 3D view: images, evaluation, skipped files, timings, attempts, matches, config."""
    out = [f'<h2 id="images-section">Images ({len(rows)})</h2>',
           table(["image", "registered", "keypoints", "observations", "mean reprojection error (px)", "camera"],
                 [[r["name"], r["registered"], r["keypoints"], r["observations"], r["reprojection_error_px"],
                   r["camera"]] for r in rows], "images", [not r["registered"] for r in rows]),
           '<p class="note">observations: keypoints of the image that belong to a 3D point; reprojection error '
           "through the image's COLMAP camera.</p>"]
    if evaluation:
        out.append(_evaluation_section(evaluation))
    skipped = (report.get("images") or {}).get("skipped", [])
    out.append(f"<h2>Skipped files ({len(skipped)})</h2>")
    out.append(table(["file", "reason"], [[s["name"], s["reason"]] for s in skipped], "skipped") if skipped
               else '<p class="note">none</p>')
    seconds = report.get("seconds") or {}
    out.append("<h2>Stage timings</h2>" + table(
        ["stage", "seconds"], [[k, float(v)] for k, v in seconds.items()] + [["total", float(sum(seconds.values()))]],
        "timings", digits=2))
    if report.get("models"):
        keys = sorted({k for m in report["models"] for k in m})
        out.append("<h2>Mapping attempts</h2>" + table(keys, [[m.get(k) for k in keys] for m in report["models"]],
                                                         "models"))
    pictures = [n for n in report.get("match_pictures") or [] if (output / "matches" / n).is_file()]
    if pictures:
        out.append(f"<h2>Matches ({len(pictures)} pairs with most matches)</h2>")
        out.append('<div class="pics">' + "".join(
            picture(output / "matches" / n, n.replace(".jpg", "").replace("__", " – ")) for n in pictures) + "</div>")
    out.append("<h2>Configuration and versions</h2>"
               + table(["package", "version"], sorted((report.get("versions") or {}).items()), "versions")
               + "<details><summary>resolved configuration (config.json)</summary><pre>"
               + esc(json.dumps(report.get("config") or {}, indent=1)) + "</pre></details>")
    return out


def build_html(output: Path, evaluation: dict[str, Any] | None = None, max_points: int = DEFAULT_MAX_POINTS,
               max_bytes: int = MAX_BYTES) -> str:
    """The page's HTML for the reconstruct output folder `output`."""
    import pycolmap

    t0 = time.perf_counter()
    report_path = output / "report.json"
    if not report_path.is_file():
        raise FileNotFoundError(f"{report_path} not found: {output} is not a `python -m l2m_sfm.reconstruct` output")
    report = json.loads(report_path.read_text())
    model = pycolmap.Reconstruction(str(output / "sfm")) \
        if report.get("model") and (output / "sfm" / "images.bin").is_file() else None
    if evaluation is None:
        evaluation = read_evaluation(output)
    rows = image_rows(model, _names(report), (report.get("database") or {}).get("keypoints_per_image") or {})
    num_reg = sum(r["registered"] for r in rows)
    unregistered = [r["name"] for r in rows if not r["registered"]]
    parts, tail = [_facts(report, rows)], _sections(output, report, rows, evaluation)
    root = (report.get("images") or {}).get("root", "")
    scene = Path(root).parent.name if Path(root).name == "images" else Path(root).name
    unreg = f" ({', '.join(unregistered[:20])}{' …' if len(unregistered) > 20 else ''})" if unregistered else ""

    def assemble(data: dict[str, Any] | None) -> str:
        if data is None:
            view = '<p class="note">No model: nothing to show in 3D.</p>'
        else:
            sub = (f"all {data['num_points']} points shown" if data["num_shown"] == data["num_points"] else
                   f"{data['num_shown']} of {data['num_points']} points shown: a random subsample (seed 0), as "
                   f"the page keeps at most {max_points} points and {max_bytes / 1e6:.0f} MB; "
                   "`python -m l2m_sfm.report OUT --max-points N` changes the budget")
            view = (f'<h2>3D view</h2><p class="note">{num_reg} registered cameras (red frusta, name on hover), '
                    f"{len(unregistered)} unregistered{esc(unreg)}; {esc(sub)}. Drag to rotate, scroll to zoom.</p>"
                    '<div id="view3d" class="plot" style="height:620px"></div>'
                    + json_script("scene-data", data) + f"<script>{VIEW_JS}</script>")
        written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        body = "".join(parts + [view] + tail) + (f'<p class="note" id="built">built {written} in '
                                                f"{time.perf_counter() - t0:.2f} s by l2m_sfm.report_html</p>")
        return page(f"Reconstruction of {scene or output.name}", body, subtitle=f"images {root} · output {output}",
                    head=plotly_script() if data is not None else "")

    if model is None:
        return assemble(None)
    budget = max_points
    while True:  # shrink the point budget until the page fits (at most a few rounds: ~BYTES_PER_POINT each)
        data = scene_payload(model, budget)
        text = assemble(data)
        excess = len(text.encode()) - max_bytes
        if excess <= 0 or data["num_shown"] <= MIN_POINTS:
            return text
        budget = max(MIN_POINTS, data["num_shown"] - excess // BYTES_PER_POINT - 100)


def write_html(output: Path, evaluation: dict[str, Any] | None = None, max_points: int = DEFAULT_MAX_POINTS) -> Path:
    """Write OUT/report.html (atomically) and return its path."""
    output = Path(output)
    return write_page(build_html(output, evaluation, max_points), output / "report.html")
