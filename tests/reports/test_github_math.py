"""Reports render on GitHub: every formula survives GitHub's Markdown parser (cmark-gfm)
intact, so its math renderer receives the LaTeX as written.

In ``$…$`` the Markdown parser runs first and eats backslash escapes before punctuation
(``\\_`` → ``_``, ``\\\\`` → ``\\``, ``\\:`` → ``:``): ``\\mathrm{output\\_allreduce}``
arrives broken. GitHub's ``$`…`$`` puts the LaTeX in a code span, which the parser leaves
alone. These tests render real reports through the ``cmarkgfm`` package (GitHub's own
cmark-gfm) and compare each formula in the HTML with the one in the source.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import cmarkgfm
import pytest

from shardcost.formulas import evaluate, resolve_inputs
from shardcost.reports.render import derivation_report
from shardcost.reports.text import inline_math

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "reports" / "specs").glob("*.md"))
_SOURCE_MATH = re.compile(r"\$`([^`]*)`\$")
_HTML_MATH = re.compile(r"\$<code>(.*?)</code>\$", re.DOTALL)


def _formulas_survive(markdown: str) -> int:
    """Assert each ``$`…`$`` formula of ``markdown`` comes out of cmark-gfm as the same
    text, in order, and that no ``$`` is left outside them (math the parser would eat);
    the number of formulas."""
    expected = [m.group(1) for m in _SOURCE_MATH.finditer(markdown)]
    out = cmarkgfm.github_flavored_markdown_to_html(markdown)
    got = [html.unescape(m) for m in _HTML_MATH.findall(out)]
    # in a table cell, GFM turns the pipe escape \| back into | (also in code spans)
    assert got == [e.replace("\\|", "|") for e in expected]
    assert "$" not in re.sub(r"<code>.*?</code>", "", _HTML_MATH.sub("", out), flags=re.DOTALL)
    return len(expected)


def test_plain_dollars_would_break_and_the_code_span_form_does_not() -> None:
    latex = r"\mathrm{output\_allreduce} = \begin{cases} a & \text{if}\: x \\ b \end{cases}"
    broken = cmarkgfm.github_flavored_markdown_to_html(f"${latex}$")
    assert latex not in html.unescape(broken)  # what the issue reported: escapes eaten
    assert _formulas_survive(f"a formula: {inline_math(latex)}, and after") == 1


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_committed_spec_documents_render_every_formula(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if path.name != "README.md":
        assert _formulas_survive(text) > 10


@pytest.mark.parametrize(
    ("layout", "phase", "layer", "params"),
    [
        ("tp", "prefill", "attention", {"num_kv_heads": "8"}),
        ("cp-kv-sharded", "decode", "attention", {"past_seq_len": "100,300,4000"}),
        ("ep-tp", "decode", "moe", {"batch_size": "16"}),
        ("tp", "decode", "mla", {}),
        ("ring", "prefill", "attention", {"attention_window": "sliding"}),
    ],
)
def test_derivation_reports_render_every_formula(
    layout: str, phase: str, layer: str, params: dict[str, str]
) -> None:
    inputs = resolve_inputs(layout, phase, layer=layer, hardware="h100-sxm", params=params)
    assert _formulas_survive(derivation_report(evaluate(inputs))) > 20


def test_a_backtick_cannot_hide_in_a_formula() -> None:
    with pytest.raises(ValueError, match="backtick"):
        inline_math("a`b")


def test_crossover_reports_render_every_formula(capsys: pytest.CaptureFixture[str]) -> None:
    from shardcost.cli import main

    argv = ["crossover", "tp", "cp-kv-sharded", "--metric", "communication_bytes"]
    assert main([*argv, "--solve-for", "seq_len", "--format", "markdown"]) == 0
    assert _formulas_survive(capsys.readouterr().out) >= 3
