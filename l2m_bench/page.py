"""results.html of the benchmark scripts: one offline page with the tables, interactive recall curves and the
worst pairs (two-view mode), or the reconstruction table with links to each scene's report.html (SfM mode)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from l2m_bench.plots import recall_at, recall_curve, trial_errors, worst_pair_path, worst_pairs
from l2m_sfm.html_page import esc, fmt, page, picture, plotly_figure, plotly_script, table, write_page
from l2m.evaluation.metrics import pose_auc

Records = list[dict[str, Any]]


def records_table(records: Sequence[Mapping[str, Any]], table_id: str | None = None) -> str:
    """A table of flat records, one column per key (in first-seen order); 'auc@…' fractions shown in %."""
    keys: list[str] = []
    for r in records:
        keys += [k for k in r if k not in keys and not isinstance(r[k], (dict, list))]
    pct = [k.startswith("auc@") for k in keys]
    rows = [[100 * r[k] if p and isinstance(r.get(k), float) else r.get(k) for k, p in zip(keys, pct)]
            for r in records]
    return table([f"{k} (%)" if p else k for k, p in zip(keys, pct)], rows, table_id, digits=2)


def recall_figures(runs: Mapping[str, Records], max_error: float = 20.0) -> str:
    """Recall vs pose error of every matcher: linear 0..max_error (AUC@5/10/20 in the legend) and log scale."""
    linear, log = [], []
    for i, (label, records) in enumerate(runs.items()):
        errors = trial_errors(records)
        auc = pose_auc(errors, (5, 10, 20))
        color = f"hsl({(i * 137) % 360}, 65%, 42%)"
        x, y = recall_curve(errors, max_error, num=201)
        name = f"{label} ({' / '.join(f'{100 * a:.1f}' for a in auc)})"
        linear.append({"type": "scatter", "mode": "lines", "name": name, "x": x.round(3).tolist(),
                       "y": (100 * y).round(2).tolist(), "line": {"color": color}})
        xl = np.geomspace(0.01, 180.0, 201)
        yl = 100 * recall_at(errors, xl)
        log.append({"type": "scatter", "mode": "lines", "name": label, "x": xl.round(4).tolist(),
                    "y": yl.round(2).tolist(), "line": {"color": color}})
    axis_y = {"title": {"text": "recall [% of pairs x trials]"}, "range": [0, 101]}
    return (plotly_figure("recall", linear, {
        "xaxis": {"title": {"text": "pose error max(e_R, e_t) [deg]"}, "range": [0, max_error]}, "yaxis": axis_y,
        "legend": {"title": {"text": "matcher (AUC@5/10/20 %)"}}, "showlegend": True, "margin": {"t": 20}})
        + plotly_figure("recall-log", log, {
            "xaxis": {"title": {"text": "pose error [deg], log scale"}, "type": "log"}, "yaxis": axis_y,
            "showlegend": True, "margin": {"t": 20}}))


def _summary_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [[r["matcher"], 100 * r["metrics"]["auc@5"], 100 * r["metrics"]["auc@10"], 100 * r["metrics"]["auc@20"],
             100 * r["metrics"]["mAA"], r["failures"], r["median_matches"], r["median_inliers"],
             r["seconds_per_pair"]] for r in rows]


def write_two_view_page(out_dir: Path, benchmark: str, protocol_text: str, rows: Sequence[Mapping[str, Any]],
                        runs: Mapping[str, Records], plot_dir: Path | None = None, protocol_name: str = "",
                        num_worst: int = 3, tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> Path:
    """OUT/results.html of a two-view benchmark: summary table, recall curves, worst pairs, any extra `tables`
    (title -> records), and the pictures `l2m_bench.cli.write_plots` left in `plot_dir` (scatter, worst pairs)."""
    parts = [f'<p class="note">{esc(protocol_text)}</p>',
             table(["matcher", "AUC@5", "AUC@10", "AUC@20", "mAA", "failures", "median matches", "median inliers",
                    "s/pair"], _summary_rows(rows), "results", digits=1),
             '<p class="note">AUC over every trial sample, failures kept (l2m_bench.run.summarize); in %.</p>']
    for title, records in (tables or {}).items():
        parts.append(f"<h2>{esc(title)}</h2>" + records_table(records))
    if runs:
        parts.append("<h2>Recall curves</h2>" + recall_figures(runs))
    scatter = None if plot_dir is None else Path(plot_dir) / f"{protocol_name}_scatter.png"
    worst_dir = None if plot_dir is None else Path(plot_dir) / "worst" / protocol_name
    if scatter is not None and scatter.is_file():
        parts.append("<h2>Error against number of matches</h2>" + picture(scatter, scatter.name, 1100))
    for label, records in runs.items():
        worst = worst_pairs(records, num_worst)
        parts.append(f"<h2>Worst pairs: {esc(label)}</h2>" + table(
            ["rank", "image 0", "image 1", "error (deg)", "matches", "inliers", "failed trials"],
            [[k, r["name0"], r["name1"], r["error"], r["num_matches"], r["num_inliers"], r["failures"]]
             for k, r in enumerate(worst, 1)], bad_rows=[not math.isfinite(r["error"]) for r in worst], digits=2))
        for k in range(1, len(worst) + 1):
            path = None if worst_dir is None else worst_pair_path(worst_dir, label, k)
            if path is not None and path.is_file():
                parts.append(picture(path, f"{label} #{k} (inliers green, outliers red)", 1400))
    versions = next((r.get("versions") for r in rows if r.get("versions")), {})
    parts.append("<h2>Versions</h2>" + table(["package", "version"], sorted(versions.items())))
    return write_page(page(f"{benchmark}: two-view relative pose", "".join(parts), head=plotly_script()),
                      Path(out_dir) / "results.html")


def write_sfm_page(out_dir: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """OUT/results.html of scene_benchmark --mode sfm: one row per (scene, matcher), linked to its report.html."""
    out_dir = Path(out_dir)
    body = []
    for r in rows:
        report = out_dir / "sfm" / r["scene"] / r["matcher"].replace("/", "_") / "report.html"
        link = (f'<a href="{esc(os.path.relpath(report, out_dir))}">report</a>' if report.is_file() else "–")
        auc = r.get("auc") or {}
        cells = [r["scene"], r["matcher"], f"{r['num_registered']}/{r['num_gt_images']}",
                 *[100 * auc[f"@{t}"] if auc.get(f"@{t}") is not None else None for t in (5, 10, 20)],
                 r.get("median_center_error"), r.get("median_rotation_error_deg"), float(r["seconds"])]
        cls = ' class="bad"' if r.get("error") else ""
        body.append(f"<tr{cls}>" + "".join(
            f'<td class="num">{esc(fmt(c, 3))}</td>' if isinstance(c, float) else f"<td>{esc(fmt(c))}</td>"
            for c in cells) + f"<td>{link}</td></tr>")
    head = "".join(f"<th>{esc(h)}</th>" for h in ("scene", "matcher", "registered", "AUC@5 (%)", "AUC@10 (%)",
                                                  "AUC@20 (%)", "median centre error", "median rotation error (°)",
                                                  "seconds", "page"))
    errors = [f"<li>{esc(r['scene'])} / {esc(r['matcher'])}: {esc(r['error'])}</li>" for r in rows if r.get("error")]
    text = (f'<table id="results"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            '<p class="note">Pairwise relative-pose AUC over all image pairs of the ground truth (an unregistered '
            "image counts as a failure); camera errors after Sim(3) alignment (l2m_sfm.evaluate).</p>"
            + (f"<h2>Failed reconstructions</h2><ul>{''.join(errors)}</ul>" if errors else ""))
    return write_page(page("Scene benchmark: reconstruction against ground truth", text), out_dir / "results.html")
