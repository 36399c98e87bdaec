"""Every `python -m l2m_sfm.<stage>` named in the README has a --help and refuses bad input in one line."""
import runpy
import sys

import pytest

STAGES = ["images", "pairs", "match_features", "match_dense", "colmap", "reconstruct", "triangulate", "evaluate"]


def _run_module(module: str, argv: list[str], monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", [module, *argv])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module(f"l2m_sfm.{module}", run_name="__main__", alter_sys=False)
    code = exit_info.value.code
    return 0 if code is None else code if isinstance(code, int) else 1


@pytest.mark.parametrize("stage", STAGES)
def test_stage_has_help(stage, monkeypatch, capsys):
    assert _run_module(stage, ["--help"], monkeypatch) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--help" in out and len(out.splitlines()) > 3


@pytest.mark.parametrize("stage", ["colmap", "reconstruct"])
def test_stage_without_arguments_says_what_is_missing(stage, monkeypatch, capsys):
    assert _run_module(stage, [], monkeypatch) == 2
    assert "the following arguments are required: --images" in capsys.readouterr().err
