"""Benchmark figures: recall-vs-error curves of several matchers, per-pair error scatter, worst-pair matches.

Inputs are the per-pair records of `l2m_bench.run.evaluate_cache` (errors in degrees; failures carry the
protocol's failure value, drawn at the right/top edge). Files are PNGs written atomically.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from l2m.viz import draw_matches  # noqa: E402

Records = list[dict[str, Any]]


def _save(fig: plt.Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def trial_errors(records: Records) -> np.ndarray:
    """Every trial error of a run (degrees, failures as stored: inf or 90)."""
    return np.array([t["error"] for r in records for t in r["trials"]], np.float64)


def recall_at(errors: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of samples with error < each threshold; failures (inf, nan) count in the denominator."""
    e = np.sort(np.nan_to_num(np.asarray(errors, np.float64), nan=np.inf))
    return np.searchsorted(e, thresholds, side="left") / max(len(e), 1)


def recall_curve(errors: np.ndarray, max_error: float, num: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds 0..max_error, recall at each); failures count in the denominator."""
    x = np.linspace(0.0, max_error, num)
    return x, recall_at(errors, x)


def plot_recall_curves(runs: Mapping[str, Records], path: Path, max_error: float = 20.0, title: str = "",
                       log_range: tuple[float, float] = (0.01, 180.0)) -> Path:
    """Recall-vs-pose-error curves of all matchers on one figure: linear 0..max_error (the AUC range, AUC@5/10/20
    in the legend) and a log-error panel that separates near-saturated methods."""
    from l2m.evaluation.metrics import pose_auc

    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4))
    for i, (label, records) in enumerate(runs.items()):
        errors = trial_errors(records)
        auc = pose_auc(errors, (5, 10, 20))
        x, y = recall_curve(errors, max_error)
        axes[0].plot(x, 100 * y, lw=1.8, color=f"C{i % 10}",
                     label=f"{label} ({' / '.join(f'{100 * a:.1f}' for a in auc)})")
        xl = np.geomspace(*log_range, 400)
        axes[1].plot(xl, 100 * recall_at(errors, xl), lw=1.8, color=f"C{i % 10}", label=label)
    for t in (5, 10, 20):
        for ax in axes:
            ax.axvline(t, color="0.85", lw=0.8, zorder=0)
    axes[0].set(xlabel="pose error max(e_R, e_t) [deg]", ylabel="recall [% of pairs x trials]",
                xlim=(0, max_error), ylim=(0, 101))
    axes[0].legend(title="matcher (AUC@5/10/20 %)", fontsize=8, loc="lower right")
    axes[1].set_xscale("log")
    axes[1].set(xlabel="pose error [deg], log scale", xlim=log_range, ylim=(0, 101))
    axes[1].legend(fontsize=8, loc="upper left")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_error_scatter(runs: Mapping[str, Records], path: Path, title: str = "", floor: float = 1e-2,
                       ceil: float = 180.0) -> Path:
    """Per-pair pose error (median over trials) against the number of matches, log-log, one colour per matcher.

    Failed pairs are drawn as crosses at `ceil`; errors below `floor` are drawn at `floor`.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, (label, records) in enumerate(runs.items()):
        n = np.array([max(r["num_matches"], 1) for r in records], np.float64)
        e = np.array([r["error"] for r in records], np.float64)
        failed = ~np.isfinite(e) | np.array([r["failures"] == len(r["trials"]) for r in records], bool)
        color = f"C{i % 10}"
        ax.scatter(n[~failed], np.clip(e[~failed], floor, ceil), s=12, alpha=0.7, color=color,
                   label=f"{label} ({len(records)} pairs)")
        if failed.any():
            ax.scatter(n[failed], np.full(failed.sum(), ceil), marker="x", s=30, color=color,
                       label=f"{label}: {failed.sum()} failed")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="matches per pair (after the protocol's cap)", ylabel="pose error [deg] (median over trials)",
           ylim=(floor * 0.8, ceil * 1.5), title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _save(fig, path)


def worst_pairs(records: Records, k: int = 3) -> Records:
    """The k records with the largest error (failures first), ties broken by fewer matches."""
    return sorted(records, key=lambda r: (-r["error"] if np.isfinite(r["error"]) else -np.inf,
                                          r["num_matches"]))[:k]


def draw_pair(image0: np.ndarray, image1: np.ndarray, kpts0: np.ndarray, kpts1: np.ndarray,
              inliers: np.ndarray | None, caption: str, path: Path, max_lines: int = 300) -> Path:
    """Side-by-side match image (inliers green, outliers red) with a caption; kpts in these images' pixels."""
    import cv2

    n = len(kpts0)
    colors = np.tile(np.array([[0, 200, 0]], np.uint8), (n, 1))
    if inliers is not None and len(inliers) == n:
        colors[~np.asarray(inliers, bool)] = (230, 30, 30)
    canvas = draw_matches(image0, image1, kpts0, kpts1, max_lines=max_lines, colors=colors)
    canvas = np.concatenate([np.full((28, canvas.shape[1], 3), 255, np.uint8), canvas], 0)
    cv2.putText(canvas, caption[:160], (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    cv2.imwrite(str(tmp), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    os.replace(tmp, path)
    return path


def worst_pair_path(out_dir: Path, label: str, rank: int) -> Path:
    """File of the rank-th worst pair picture of matcher `label` (rank from 1)."""
    safe = "".join(c if c.isalnum() or c in "+-." else "_" for c in label)
    return Path(out_dir) / f"{safe}_worst{rank}.png"


def plot_worst_pairs(label: str, records: Records, load: Callable[[dict[str, Any]], tuple], out_dir: Path,
                     k: int = 3) -> list[Path]:
    """Match images of the k worst pairs of one matcher; `load(record)` gives (im0, im1, k0, k1, inliers)."""
    paths = []
    for rank, r in enumerate(worst_pairs(records, k), 1):
        im0, im1, k0, k1, inliers = load(r)
        n_in = int(np.sum(inliers)) if inliers is not None else 0
        caption = (f"{label} #{rank}: {r['name0']} - {r['name1']}  error {r['error']:.2f} deg  "
                   f"{len(k0)} matches, {n_in} inliers")
        paths.append(draw_pair(im0, im1, k0, k1, inliers, caption, worst_pair_path(out_dir, label, rank)))
    return paths
