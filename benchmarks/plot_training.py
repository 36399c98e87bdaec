"""Loss curves and validation metrics of training runs (OUTPUT/metrics.jsonl written by l2m.train.loop).

    python benchmarks/plot_training.py RUN_DIR [RUN_DIR ...] --output curves.png [--json summary.json]
        [--html page.html]

Plots the training loss (raw and moving average) against the step, one panel per run, and the validation
metrics; prints a table of each validation metric at the first and last validation step and writes it as JSON.
The same curves, interactive, and the table go to an offline page (default: curves.html beside the PNG).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

if __package__ in (None, ""):  # run as a script: make the repository importable without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# headline validation metrics per stage (plotted; all metrics go to the table)
HEADLINE = ("epe_px_fine", "pck3", "student_l1", "teacher_l1", "student_cos")


def read_log(run: Path) -> tuple[list[dict], list[dict]]:
    """(train records, validation records) of a run folder."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run} is not a training run folder (l2m.train.loop output)")
    recs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return [r for r in recs if r["split"] == "train"], [r for r in recs if r["split"] == "val"]


def moving_average(x: list[float], k: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(x):
        acc += v
        if i >= k:
            acc -= x[i - k]
        out.append(acc / min(i + 1, k))
    return out


def summarize(val: list[dict]) -> dict[str, dict[str, float]]:
    """{metric: {"start_step", "start", "end_step", "end"}} over the validation records."""
    if not val:
        return {}
    first, last = val[0], val[-1]
    keys = [k for k in first if k not in ("step", "split", "time")]
    return {k: {"start_step": first["step"], "start": first[k], "end_step": last["step"], "end": last.get(k)}
            for k in keys}


def plot(runs: list[Path], output: Path) -> dict:
    n = len(runs)
    fig, axes = plt.subplots(n, 2, figsize=(11, 3.6 * n), squeeze=False)
    summary = {}
    for i, run in enumerate(runs):
        tr, val = read_log(run)
        steps = [r["step"] for r in tr]
        loss = [r["total"] for r in tr]
        ax = axes[i, 0]
        ax.plot(steps, loss, alpha=0.35, lw=1, label="train loss (per log interval)")
        ax.plot(steps, moving_average(loss, 10), lw=2, label="moving average (10)")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(f"{run.name}: training loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax = axes[i, 1]
        ax2 = ax.twinx()  # fractions (PCK, cosine) on the right axis, errors on the left
        for j, k in enumerate(HEADLINE):
            pts = [(r["step"], r[k]) for r in val if k in r]
            if pts:
                frac = k.startswith("pck") or k.endswith("_cos")
                (ax2 if frac else ax).plot(*zip(*pts), marker="o", color=f"C{j}", ls="--" if frac else "-",
                                           label=k + (" (right)" if frac else ""))
        ax.set_xlabel("step")
        ax.set_ylabel("error (EPE px / feature L1)")
        ax2.set_ylabel("fraction (PCK / cosine)")
        ax.set_title(f"{run.name}: validation (held-back synthetic pairs)")
        ax.grid(alpha=0.3)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8)
        summary[str(run)] = {"train_steps": steps[-1] if steps else 0,
                             "train_loss_first": loss[0] if loss else None,
                             "train_loss_last10": sum(loss[-10:]) / len(loss[-10:]) if loss else None,
                             "val": summarize(val)}
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.stem + ".tmp" + output.suffix)
    fig.savefig(tmp, dpi=110)
    tmp.replace(output)
    return summary


def write_html(runs: list[Path], summary: dict, path: Path) -> Path:
    """One offline page: per run, the loss curve (raw + moving average) and the validation metrics, interactive,
    and the first/last validation table."""
    from l2m_sfm.html_page import esc, page, plotly_figure, plotly_script, table, write_page

    parts = []
    for i, run in enumerate(runs):
        tr, val = read_log(run)
        steps, loss = [r["step"] for r in tr], [r["total"] for r in tr]
        parts.append(f"<h2>{esc(run.name)}</h2><p class=\"note\">{esc(run)}</p>")
        parts.append(plotly_figure(f"loss{i}", [
            {"type": "scatter", "mode": "lines", "name": "train loss (per log interval)", "x": steps, "y": loss,
             "opacity": 0.4},
            {"type": "scatter", "mode": "lines", "name": "moving average (10)", "x": steps,
             "y": moving_average(loss, 10), "line": {"width": 3}}],
            {"xaxis": {"title": {"text": "step"}}, "yaxis": {"title": {"text": "loss"}}, "margin": {"t": 20}}, 360))
        traces = []
        for k in HEADLINE:
            pts = [(r["step"], r[k]) for r in val if k in r]
            if pts:
                frac = k.startswith("pck") or k.endswith("_cos")
                traces.append({"type": "scatter", "mode": "lines+markers", "name": k + (" (right)" if frac else ""),
                               "x": [p[0] for p in pts], "y": [p[1] for p in pts], "yaxis": "y2" if frac else "y",
                               "line": {"dash": "dash" if frac else "solid"}})
        if traces:
            parts.append(plotly_figure(f"val{i}", traces, {
                "xaxis": {"title": {"text": "step"}}, "yaxis": {"title": {"text": "error (EPE px / feature L1)"}},
                "yaxis2": {"title": {"text": "fraction (PCK / cosine)"}, "overlaying": "y", "side": "right"},
                "margin": {"t": 20}, "legend": {"x": 1.08}}, 360))
        s = summary[str(run)]
        parts.append(table(["metric", "start", "end", "steps"], [
            [k, v["start"], v["end"], f"{v['start_step']} -> {v['end_step']}"] for k, v in s["val"].items()],
            f"val-table{i}", digits=4))
    return write_page(page("Training curves", "".join(parts), head=plotly_script()), path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--output", type=Path, required=True, help="PNG file")
    ap.add_argument("--json", type=Path, help="summary JSON (default: next to the PNG)")
    ap.add_argument("--html", type=Path, help="offline page with the curves (default: next to the PNG)")
    args = ap.parse_args(argv)
    summary = plot(args.runs, args.output)
    for run, s in summary.items():
        print(f"\n{run}: {s['train_steps']} steps, loss {s['train_loss_first']:.4g} -> "
              f"{s['train_loss_last10']:.4g} (mean of the last 10 logs)")
        print(f"{'metric':<16}{'start':>12}{'end':>12}   steps")
        for k, v in s["val"].items():
            print(f"{k:<16}{v['start']:>12.4g}{v['end']:>12.4g}   {v['start_step']} -> {v['end_step']}")
    js = args.json or args.output.with_suffix(".json")
    tmp = js.with_name(js.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(js)
    html = write_html(args.runs, summary, args.html or args.output.with_suffix(".html"))
    print(f"\nwrote {args.output}, {js} and {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
