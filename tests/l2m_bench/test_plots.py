"""Benchmark figures: the recall curve numbers, worst-pair selection and that the PNGs are written."""
import math

import cv2
import numpy as np

from l2m_bench.plots import (plot_error_scatter, plot_recall_curves, plot_worst_pairs, recall_curve,
                                 worst_pairs)


def _records(errors):
    return [{"name0": f"{i}a", "name1": f"{i}b", "error": e, "num_matches": 10 + i, "failures": int(math.isinf(e)),
             "trials": [{"error": e, "success": not math.isinf(e)}]} for i, e in enumerate(errors)]


def test_recall_curve_counts_failures_in_the_denominator():
    x, y = recall_curve(np.array([1.0, 2.0, math.inf, 3.0]), 4.0, num=5)  # x = 0, 1, 2, 3, 4
    assert y.tolist() == [0.0, 0.0, 0.25, 0.5, 0.75]


def test_worst_pairs_puts_failures_first():
    recs = _records([0.5, math.inf, 7.0, 2.0])
    assert [r["error"] for r in worst_pairs(recs, 2)] == [math.inf, 7.0]


def test_figures_are_written(tmp_path):
    runs = {"a": _records([0.1, 1.0, 3.0, math.inf]), "b": _records([0.2, 0.3, 25.0, 4.0])}
    for p in (plot_recall_curves(runs, tmp_path / "r.png", title="t"), plot_error_scatter(runs, tmp_path / "s.png")):
        img = cv2.imread(str(p))
        assert img is not None and img.shape[0] > 200 and img.shape[1] > 300
    im = np.zeros((60, 80, 3), np.uint8)
    k = np.array([[10.0, 10.0], [40.0, 30.0]])

    def load(r):
        return im, im, k, k + 5, np.array([True, False])

    paths = plot_worst_pairs("a+b", runs["a"], load, tmp_path / "worst", k=2)
    assert [p.name for p in paths] == ["a+b_worst1.png", "a+b_worst2.png"]
    drawn = cv2.imread(str(paths[0]))[:, :, ::-1]
    r, g = drawn[..., 0].astype(int), drawn[..., 1].astype(int)
    assert ((r > 180) & (g < 90)).sum() > 0 and ((g > 150) & (r < 90)).sum() > 0  # red outlier, green inlier
