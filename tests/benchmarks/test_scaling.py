"""benchmarks/scaling.py: growth fits, curves, table and plot from recorded runs (no benchmark is run)."""
import numpy as np

from script_loader import load_script


def _matching(n: int, procs: int, seconds: float) -> dict:
    return {"part": "matching", "images": n, "procs": procs, "pairs": 7 * n,
            "seconds": {"retrieval pairs": 0.1 * n, "extraction": 0.3 * n, "matching": seconds},
            "peak_rss_mb": {"retrieval pairs": 600.0, "extraction": 700.0, "matching": 710.0},
            "matches_bytes": 9216 * 7 * n, "features_bytes": 1}


def test_power_law_fit_recovers_exponent_and_skips_short_series():
    scaling = load_script("benchmarks/scaling.py")
    n = np.array([25, 50, 100, 200])
    fit = scaling.fit_growth(list(n), list(0.02 * n ** 1.5))
    assert abs(fit["b"] - 1.5) < 1e-6 and abs(fit["a"] - 0.02) < 1e-9
    assert scaling.fit_growth([25], [1.0]) is None


def test_series_table_and_plot_from_runs(tmp_path):
    scaling = load_script("benchmarks/scaling.py")
    runs = [_matching(n, p, 0.01 * n ** 2 / p) for n in (25, 50, 100) for p in (1, 2)]
    runs.append({"part": "mapping", "images": 25, "procs": 1, "mapper": "global", "pairs": 195, "registered": 25,
                 "seconds": {"mapping": 8.0, "database + verification": 3.5, "matching": 3.3},
                 "peak_rss_mb": 680.0, "matches_bytes": 195 * 1024})
    curves = scaling.series(runs)
    assert curves["matching, 2 proc"]["n"] == [25, 50, 100]
    assert abs(curves["matching, 1 proc"]["fit"]["b"] - 2.0) < 1e-6
    assert curves["extraction, 1 proc"]["fit"]["b"] == 1.0 and curves["mapping (global)"]["fit"] is None
    table = scaling.table(runs)
    assert "| matching | 100 | 2 | 700 | 10.0 | 30.0 | 50.0 |" in table and "| 9.0 |" in table
    png = scaling.plot({"series": curves}, tmp_path / "s.png")
    assert png.stat().st_size > 10_000
