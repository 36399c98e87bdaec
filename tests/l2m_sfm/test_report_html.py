"""report.html: per-image numbers on a hand-made model, point budget, failed runs, rebuild with --gt; and the
sample scene's report plus a benchmark page checked in headless Chromium."""
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pycolmap
import pytest

from l2m_sfm import report, report_html
from l2m_bench.page import write_two_view_page
from l2m_bench.plots import draw_pair, worst_pair_path
from browser import Browser, find_chromium

SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "samples" / "toybox"


def _write_model(folder: Path, extra_points: int = 0) -> None:
    """Text model: PINHOLE f=500 at (320, 240); a.jpg at the origin, b.jpg at x=1, c.jpg at y=1, all looking
    along +z. P1 = (0, 0, 5) is seen 3 px right and 4 px down of its projection in a.jpg (error 5 px) and
    exactly in b.jpg; P2 = (1, 0, 5) exactly in a.jpg and 10 px low in b.jpg. c.jpg and e.jpg (at (1, 1, 0.5))
    have no observations."""
    folder.mkdir(parents=True)
    (folder / "cameras.txt").write_text("1 PINHOLE 640 480 500 500 320 240\n")
    images = ("1 1 0 0 0 0 0 0 1 a.jpg\n323 244 1 420 240 2\n"
              "2 1 0 0 0 -1 0 0 1 b.jpg\n220 240 1 320 250 2\n"
              "3 1 0 0 0 0 -1 0 1 c.jpg\n\n"
              "4 1 0 0 0 -1 -1 -0.5 1 e.jpg\n\n")
    (folder / "images.txt").write_text(images)
    rng = np.random.default_rng(0)
    lines = ["1 0 0 5 200 10 10 2.5 1 0 2 0", "2 1 0 5 10 200 10 5 1 1 2 1"]
    lines += [f"{3 + i} {x:.4f} {y:.4f} {z:.4f} 90 90 90 0" for i, (x, y, z) in
              enumerate(rng.uniform([-2, -2, 4], [2, 2, 6], (extra_points, 3)))]
    (folder / "points3D.txt").write_text("\n".join(lines) + "\n")


def _out(tmp_path: Path, extra_points: int = 0, failed: bool = False) -> Path:
    out = tmp_path / "out"
    model_txt = tmp_path / "txt"
    _write_model(model_txt, extra_points)
    rec = pycolmap.Reconstruction(str(model_txt))
    rep = {"images": {"root": "/data/scene/images", "found": 5, "skipped": [{"name": "bad.jpg", "reason": "empty"}]},
           "database": {"keypoints_per_image": {"a.jpg": 900, "b.jpg": 800, "c.jpg": 700, "d.jpg": 50, "e.jpg": 60},
                        "verified_pairs": 3},
           "config": {"matcher": {"name": "sift"}}, "versions": {"pycolmap": "4.2.1"},
           "seconds": {"matching": 1.5, "mapping": 0.5}, "pairs": {"method": "exhaustive", "num_pairs": 6}}
    if failed:
        rep["model"], rep["error"] = None, "No model could be reconstructed from 5 images"
    else:
        (out / "sfm").mkdir(parents=True)
        rec.write(str(out / "sfm"))
        rep["model"] = {"registered": 4, "points3D": rec.num_points3D(), "mean_track_length": 2.0,
                        "mean_reprojection_error_px": 3.75, "registered_names": ["a.jpg", "b.jpg", "c.jpg", "e.jpg"],
                        "unregistered_names": ["d.jpg"]}
    out.mkdir(exist_ok=True)
    (out / "report.json").write_text(json.dumps(rep))
    return out


def test_image_rows_count_observations_and_reprojection_errors(tmp_path):
    rec = pycolmap.Reconstruction(str(_out(tmp_path) / "sfm"))
    rows = {r["name"]: r for r in report_html.image_rows(rec, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
                                                         {"a.jpg": 900})}
    assert rows["a.jpg"]["observations"] == 2 and rows["a.jpg"]["reprojection_error_px"] == pytest.approx(2.5)
    assert rows["b.jpg"]["reprojection_error_px"] == pytest.approx(5.0)
    assert rows["c.jpg"]["registered"] and rows["c.jpg"]["observations"] == 0
    assert rows["c.jpg"]["reprojection_error_px"] is None
    assert not rows["d.jpg"]["registered"] and rows["d.jpg"]["camera"] == ""
    assert rows["a.jpg"]["keypoints"] == 900 and rows["a.jpg"]["camera"] == "#1 PINHOLE 640x480 f=500.0"


def test_frusta_sit_at_the_camera_centres_and_look_along_the_view(tmp_path):
    data = report_html.scene_payload(pycolmap.Reconstruction(str(_out(tmp_path) / "sfm")), 1000)
    centres = {n: (x, y, z) for n, x, y, z in zip(data["centers"]["text"], data["centers"]["x"],
                                                 data["centers"]["y"], data["centers"]["z"])}
    assert centres["b.jpg"] == pytest.approx((1, 0, 0)) and centres["c.jpg"] == pytest.approx((0, 1, 0))
    z = [v for v, name in zip(data["frusta"]["z"], data["frusta"]["text"]) if name == "a.jpg" and v is not None]
    assert min(z) == 0 and max(z) > 0  # corners in front of the camera (+z)
    assert data["view"]["up"] == pytest.approx({"x": 0, "y": -1, "z": 0})  # COLMAP's y points down


def test_page_holds_every_section_and_subsamples_over_the_budget(tmp_path):
    out = _out(tmp_path, extra_points=3000)
    html = report_html.build_html(out, max_points=1000)
    assert "1000 of 3002 points shown" in html
    data = json.loads(html.split('id="scene-data">')[1].split("</script>")[0])
    assert data["num_shown"] == 1000 and len(np.frombuffer(__import__("base64").b64decode(data["points"]["x"]),
                                                             np.float32)) == 1000
    for text in ("bad.jpg", "empty", "Stage timings", "matching", "pycolmap", "4.2.1", "4 registered cameras",
                 "1 unregistered (d.jpg)", "Reconstruction of scene"):
        assert text in html, text
    table = html.split('<table id="images">')[1].split("</table>")[0]
    assert table.count("<tr") == 6  # header + one row per image
    assert '<script src=' not in html and "cdn." not in html.split("<script")[0]
    # the byte budget wins over max_points
    full = report_html.build_html(out, max_points=100_000)
    assert "all 3002 points shown" in full
    small = report_html.build_html(out, max_points=100_000, max_bytes=len(full) - 30_000)
    shown = json.loads(small.split('id="scene-data">')[1].split("</script>")[0])["num_shown"]
    assert len(small) <= len(full) - 30_000 and 1000 < shown < 3002


def test_failed_run_page_shows_the_error_and_no_3d_view(tmp_path):
    html = report_html.build_html(_out(tmp_path, failed=True))
    assert "No model could be reconstructed" in html and "No model: nothing to show" in html
    assert "Plotly" not in html and len(html) < 100_000
    assert html.split('<table id="images">')[1].split("</table>")[0].count('class="bad"') == 5


def test_rebuild_with_gt_adds_the_evaluation_and_a_stale_one_is_ignored(tmp_path, capsys):
    out = _out(tmp_path)
    assert report.main([str(out), "--gt", str(tmp_path / "txt")]) == 0
    ev = json.loads((out / "eval.json").read_text())
    assert ev["num_registered"] == 4 and ev["median_rotation_error_deg"] == pytest.approx(0, abs=1e-6)
    html = (out / "report.html").read_text()
    assert html.split('id="evaluation-table">')[1].split("</table>")[0].count("<tr>") == 5
    assert "MB ->" in capsys.readouterr().out
    old = time.time() - 100
    os.utime(out / "eval.json", (old, old))  # older than the model: from an earlier run
    report.main([str(out)])
    assert "evaluation-table" not in (out / "report.html").read_text()
    with pytest.raises(SystemExit, match="not a `python -m l2m_sfm.reconstruct` output"):
        report.main([str(tmp_path / "nothing")])


def _records(errors):
    return [{"name0": f"{i}a.jpg", "name1": f"{i}b.jpg", "error": e, "num_matches": 100 + i, "num_inliers": 50,
             "failures": int(np.isinf(e)), "trials": [{"error": e, "success": bool(np.isfinite(e))}]}
            for i, e in enumerate(errors)]


def _benchmark_page(out: Path) -> Path:
    runs = {"sift": _records([0.5, 1.0, 3.0, np.inf]), "l2m-tiny": _records([0.2, 2.0, 8.0, 30.0])}
    rows = [{"matcher": m, "metrics": {"auc@5": 0.5, "auc@10": 0.6, "auc@20": 0.7, "mAA": 0.6}, "failures": 1,
             "median_matches": 101.5, "median_inliers": 50.0, "seconds_per_pair": 0.4, "versions": {"x": "1"}}
            for m in runs]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), np.uint8)
    kpts = rng.uniform(0, 120, (20, 2))
    draw_pair(image, image, kpts, kpts, None, "worst", worst_pair_path(out / "plots" / "worst" / "poselib", "sift", 1))
    return write_two_view_page(out, "demo", "protocol poselib", rows, runs, out / "plots", "poselib", 2,
                               {"Per scene": [{"scene": "s", "matcher": "sift", "auc@5": 0.5}]})


def test_benchmark_page_tables_and_pictures(tmp_path):
    html = _benchmark_page(tmp_path).read_text()
    assert html.split('<table id="results">')[1].split("</table>")[0].count("<tr>") == 3
    assert "Worst pairs: sift" in html and html.count('<img class="pic"') == 1
    assert "auc@5 (%)" in html and "50.00" in html


def _non_background(png: bytes, background=(255, 255, 255), tol: int = 40) -> float:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].astype(int)
    return float((np.abs(image - np.array(background)).max(2) > tol).mean())


@pytest.fixture(scope="module")
def chromium():
    exe = find_chromium()
    if exe is None:
        pytest.skip("Chromium is not installed and could not be: .ci/run installs it with "
                    "`apt-get install chromium` (set $CHROMIUM to use another binary)")
    with Browser(exe) as browser:
        yield browser


def test_sample_report_and_benchmark_page_in_chromium(chromium, tmp_path):
    """The sample scene's report.html and a benchmark results.html in a real browser: no console errors or
    requests off the machine, the 3D canvas draws the model, one table row per image."""
    from l2m_sfm import reconstruct

    out = tmp_path / "toybox"
    reconstruct.main({"matcher": {"name": "gt", "conf": {"scene": str(SAMPLE), "step": 16}}},
                     SAMPLE / "images", out)
    report.main([str(out), "--gt", str(SAMPLE / "gt")])
    size = (out / "report.html").stat().st_size
    assert 1e6 < size < 10e6  # plotly.js inline (~4.8 MB) + the model, under the 10 MB budget

    tab = chromium.open(out / "report.html")
    tab.wait_for("window.pageReady === true")
    assert tab.errors == [] and tab.remote_requests == []
    assert tab.evaluate("document.querySelectorAll('#images tbody tr').length") == 8
    assert tab.evaluate("document.querySelectorAll('#evaluation-table tbody tr').length") == 8
    assert tab.evaluate("[...document.querySelectorAll('#images tbody tr td:nth-child(2)')]"
                        ".every(td => td.textContent === 'yes')")
    # the WebGL canvas alone: plotly's SVG overlays (legend, toolbar) hidden
    rect = tab.evaluate("""(() => {
        document.querySelectorAll('#view3d .modebar-container, #view3d .legend').forEach(e => e.remove());
        const r = document.querySelector('#view3d .gl-container canvas').getBoundingClientRect();
        window.scrollTo(0, 0); return {x: r.left, y: r.top + window.scrollY, width: r.width, height: r.height}; })()""")
    assert rect["width"] > 500 and rect["height"] > 400
    drawn = _non_background(tab.screenshot(rect))
    tab.evaluate("Plotly.restyle('view3d', {visible: false}).then(() => true)")
    time.sleep(0.5)
    empty = _non_background(tab.screenshot(rect))
    print(f"canvas: {100 * drawn:.2f} % drawn, {100 * empty:.3f} % with the traces hidden")
    assert drawn > 0.01 and empty < 0.001, (drawn, empty)  # the points and frusta are what is drawn
    assert tab.errors == []

    tab = chromium.open(_benchmark_page(tmp_path / "bench"))
    tab.wait_for("window.pageReady === true")
    assert tab.errors == [] and tab.remote_requests == []
    assert tab.evaluate("document.querySelectorAll('#results tbody tr').length") == 2
    assert tab.evaluate("document.querySelectorAll('#recall .scatterlayer .trace').length") == 2
    assert tab.evaluate("document.querySelectorAll('img.pic').length") == 1
    assert tab.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
