"""Single-file offline HTML pages: escaping, tables, embedded pictures, inline plotly.js, atomic writing.

Every page the project writes (reconstruction report, benchmark results, training curves) is one file that
opens without a network: pictures are data URIs and plotly.js is inlined from the installed plotly package.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 0 16px 40px; color: #1d232a; }
h1 { font-size: 1.5em; margin: 18px 0 4px; } h2 { font-size: 1.2em; margin-top: 28px; border-bottom: 1px solid #ddd; }
.sub { color: #5a6570; margin: 0 0 10px; }
.facts span { display: inline-block; margin: 4px 18px 4px 0; } .facts b { font-size: 1.15em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 6px 0; }
th, td { border-bottom: 1px solid #e3e6e8; padding: 3px 10px; text-align: left; }
th { background: #f3f5f6; position: sticky; top: 0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td { color: #b3261e; } .note { color: #5a6570; font-size: 0.9em; }
.error { background: #fdecea; border: 1px solid #f5c2bd; padding: 8px 12px; color: #8c1d18; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 0.85em; }
img.pic { max-width: 100%; border: 1px solid #ddd; margin: 4px 0 12px; }
.plot { width: 100%; height: 440px; }
.pics { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 0 16px; }
figure { margin: 0; }
"""


def esc(value: Any) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell's text: floats with `digits` significant decimals, None/inf/nan as '–'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], table_id: str | None = None,
          bad_rows: Sequence[bool] | None = None, digits: int = 3) -> str:
    """<table> with a header row; numbers right-aligned; rows flagged in `bad_rows` are drawn in red."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(f'<td class="num">{esc(fmt(v, digits))}</td>' if isinstance(v, (int, float))
                        and not isinstance(v, bool) else f"<td>{esc(fmt(v, digits))}</td>" for v in row)
        cls = ' class="bad"' if bad_rows is not None and bad_rows[i] else ""
        body.append(f"<tr{cls}>{cells}</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def image_uri(path: Path, max_width: int | None = None, quality: int = 85) -> str:
    """data: URI of a picture; re-encoded as JPEG at most `max_width` pixels wide when given."""
    path = Path(path)
    data, mime = path.read_bytes(), "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    if max_width is not None:
        import cv2
        import numpy as np

        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is not None and image.shape[1] > max_width:
            scale = max_width / image.shape[1]
            image = cv2.resize(image, (max_width, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
            data, mime = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes(), "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def picture(path: Path, caption: str, max_width: int | None = 1600) -> str:
    """An embedded picture with a caption."""
    return (f'<figure><img class="pic" alt="{esc(caption)}" src="{image_uri(path, max_width)}">'
            f"<figcaption class=\"note\">{esc(caption)}</figcaption></figure>")


def plotly_script() -> str:
    """<script> holding plotly.js from the installed plotly package (no CDN)."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as e:  # a dependency of l2m-sfm; only a broken install gets here
        raise RuntimeError("plotly is not installed: pip install plotly (it ships plotly.js for offline pages)") from e
    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def json_script(element_id: str, value: Any) -> str:
    """Data for the page's scripts: JSON in a non-executed <script>, '</' escaped so it cannot close the tag."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


def plotly_figure(div_id: str, traces: list[dict[str, Any]], layout: dict[str, Any], height: int = 440) -> str:
    """A plotly chart (needs `plotly_script()` in the page head); its drawing promise joins window.plots."""
    data = json_script(f"{div_id}-data", {"traces": traces, "layout": layout})
    return (f'<div id="{esc(div_id)}" class="plot" style="height:{int(height)}px"></div>{data}<script>'
            f"(function () {{ const f = JSON.parse(document.getElementById('{esc(div_id)}-data').textContent);"
            f" (window.plots = window.plots || []).push(Plotly.newPlot('{esc(div_id)}', f.traces, f.layout,"
            " {displaylogo: false, responsive: true})); })();</script>")


# window.pageReady: every chart drawn (the browser tests wait for it)
READY_SCRIPT = "<script>Promise.all(window.plots || []).then(function () { window.pageReady = true; });</script>"


def page(title: str, body: str, subtitle: str = "", head: str = "") -> str:
    """A complete HTML document; sets window.pageReady once every chart is drawn."""
    sub = f'<p class="sub">{esc(subtitle)}</p>' if subtitle else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{STYLE}</style>{head}</head><body><h1>{esc(title)}</h1>{sub}{body}{READY_SCRIPT}"
            "</body></html>\n")


def write_page(text: str, path: Path) -> Path:
    """Write a page atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
