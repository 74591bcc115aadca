"""report, spec render, the Markdown comparison and --plot from the command line."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest

from shardcost.cli import main
from tests.reports.markdown import assert_valid_tables


def test_report_to_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "deep" / "tp.md"  # a folder that is not there is never created
    argv = ["report", "tp", "--phase", "decode", "tensor_parallel=8", "-o"]
    assert main([*argv, str(missing)]) == 2
    assert "no folder" in capsys.readouterr().err and not missing.parent.exists()
    out = tmp_path / "tp.md"
    code = main([*argv, str(out)])
    assert code == 0
    doc = out.read_text()
    assert doc.startswith("# tp attention, decode")
    assert "`tensor_parallel` | $`\\mathit{tp}`$ | 8 |" in doc
    assert f"wrote {out}" in capsys.readouterr().err


def test_report_to_stdout_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "cp-kv-sharded", "seq_len=130"]) == 0
    out = capsys.readouterr().out
    assert "ceil(130/4) = 33" in out  # the uneven split is stated among the assumptions
    assert main(["report", "cp-kv-sharded", "tensor_parallel=2"]) == 2
    assert "tensor_parallel is not a parameter" in capsys.readouterr().err


def test_spec_render_writes_every_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "render", str(tmp_path)]) == 0
    assert "wrote 15 documents" in capsys.readouterr().out
    assert (tmp_path / "CP-5.md").read_text().startswith("# CP-5 — ")


def test_markdown_comparison_is_the_main_jobs_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--format", "markdown", "--hardware", "seed-test"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Every attention layout side by side")
    assert "| wall_clock_time_ms |" in out and "fastest:" in out
    assert "> **Note:**" in out  # 2049 keys over 4 ranks in decode
    assert_valid_tables(out)


def test_plot_writes_a_linked_deterministic_svg(tmp_path: Path) -> None:
    # matplotlib comes with the test extra: no skip, the plot is always exercised
    md = tmp_path / "cmp.md"
    argv = ["compare", "--format", "markdown", "--hardware", "seed-test", "-o", str(md), "--plot"]
    assert main(argv) == 0
    svg = tmp_path / "cmp.roofline.svg"
    assert "(cmp.roofline.svg)" in md.read_text()
    first = svg.read_bytes()
    assert first.startswith(b"<?xml") and b"tp-cp (tp=4, cp=4) (decode)" in first
    assert main(argv) == 0
    assert svg.read_bytes() == first  # same input, same bytes


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "tp", "--plot"], "give -o FILE.md as well"),
        (["report", "tp", "--plot", "-o", "{tmp}/r.md"], "needs hardware"),
    ],
)
def test_plot_needs_a_file_and_hardware(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    assert message in capsys.readouterr().err


def test_reports_work_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    out = tmp_path / "r.md"
    assert main(["report", "tp", "--hardware", "seed-test", "-o", str(out)]) == 0
    assert "## Takeaway" in out.read_text()
    assert main(["report", "tp", "--hardware", "seed-test", "-o", str(out), "--plot"]) == 2
    assert "pip install 'shardcost[plots]'" in capsys.readouterr().err
