"""benchmarks/plot_training.py: the PNG, the summary JSON and the offline curves page of a training log."""
import json

import pytest

from script_loader import load_script


def test_curves_page_holds_both_charts_and_the_validation_table(tmp_path):
    run = tmp_path / "s2"
    run.mkdir()
    lines = [{"split": "train", "step": s, "total": 2.0 - s / 100} for s in range(0, 100, 10)]
    lines += [{"split": "val", "step": s, "epe_px_fine": 8.0 - s / 20, "pck3": s / 100, "time": 1.0} for s in (0, 50)]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    assert load_script("benchmarks/plot_training.py").main([str(run), "--output", str(tmp_path / "curves.png")]) == 0
    html = (tmp_path / "curves.html").read_text()
    assert 'id="loss0"' in html and 'id="val0"' in html and "Plotly" in html
    table = html.split('id="val-table0">')[1].split("</table>")[0]
    assert table.count("<tr>") == 3 and "5.5000" in table  # header, epe_px_fine 8 -> 5.5, pck3
    data = json.loads(html.split('id="loss0-data">')[1].split("</script>")[0])
    assert data["traces"][0]["y"][-1] == pytest.approx(1.1)
    assert (tmp_path / "curves.png").exists() and (tmp_path / "curves.json").exists()
