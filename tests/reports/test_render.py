"""Derivation reports, spec documents and the comparison report."""

from __future__ import annotations

import itertools
from pathlib import Path

import jinja2
import pytest

from shardcost.formulas import all_layouts, evaluate, resolve_inputs
from shardcost.formulas.cases import SPEC_CASES, SpecCase, check_case, spec_case
from shardcost.reports.derivation import takeaway
from shardcost.reports.render import (
    _render,
    derivation_report,
    render_specs,
    spec_documents,
    spec_report,
)
from tests.reports.markdown import assert_valid_tables, columns

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS = [lay.name for lay in all_layouts("attention")]


def test_committed_specs_are_what_render_produces(tmp_path: Path) -> None:
    render_specs(tmp_path)
    committed = ROOT / "reports" / "specs"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in committed.iterdir())
    for path in tmp_path.iterdir():
        assert path.read_bytes() == (committed / path.name).read_bytes(), (
            f"reports/specs/{path.name} is stale: run shardcost spec render reports/specs"
        )


@pytest.mark.parametrize("case", SPEC_CASES, ids=lambda c: c.name)
def test_spec_document_names_its_case_and_holds_every_expected_number(case: SpecCase) -> None:
    doc = spec_report(check_case(case))
    assert doc.startswith(f"# {case.name} — ")
    for name, value in {**case.metrics, **case.collectives, **case.steps}.items():
        assert f"| {name}" in doc or f"| step {name}" in doc or f"| collective {name}" in doc
        assert f"{value:,}" in doc, (name, value)
    for text in [*case.timing.values(), *case.approx.values()]:
        assert f"| {text} |" in doc
    assert "✗" not in doc
    assert_valid_tables(doc)


def test_spec_index_links_every_case() -> None:
    index = spec_documents()["README.md"]
    for case in SPEC_CASES:
        assert f"[{case.name}]({case.name}.md)" in index
    assert "MISMATCH" not in index
    assert_valid_tables(index)


def test_derivation_shows_formula_numbers_and_result() -> None:
    doc = spec_report(check_case(spec_case("MHA-1")))
    # seed 001 Test 1: 2 * 256 * 1024 * 1024 = 536,870,912 (h·dh = 16·64 = 1024)
    assert (
        r"$`F_{Q} = 2 \cdot M \cdot d \cdot d_h \cdot h = 2 \times 256 \times 1024 \times 64 "
        r"\times 16`$ = **536,870,912** FLOPs" in doc
    )
    # the total is the steps' sum, in the order the steps were written
    assert r"F = F_{Q} + F_{K} + F_{V} + F_{QK} + F_{AV} + F_{O}" in doc


@pytest.mark.parametrize(
    ("layout", "phase", "hardware"),
    list(itertools.product(LAYOUTS, ["prefill", "decode"], [None, "seed-test"])),
)
def test_report_for_every_layout_has_every_part(layout: str, phase: str, hardware: str) -> None:
    result = evaluate(resolve_inputs(layout, phase, hardware=hardware))
    doc = derivation_report(result)
    for heading in (
        "## Parameters",
        "## Assumptions",
        "## Notation",
        "## Step-by-step calculation",
        "## Closed forms",
        "## Results",
        "## Takeaway",
    ):
        assert heading in doc
    # a user's report is not a test case: those are the seed's headings, in spec documents
    assert "Test case" not in doc and "Expected results" not in doc
    assert r"\times" in doc and "$`F = " in doc
    assert (hardware is not None) == ("**Timing (ms)**" in doc)
    assert doc == derivation_report(evaluate(resolve_inputs(layout, phase, hardware=hardware)))
    assert_valid_tables(doc)


@pytest.mark.parametrize(
    ("case", "bound"),
    [  # seed 000's summary table: the "Bottleneck" column
        ("ATT-TIME-1", "Bound by compute: 1.374 ms, 10.2× the next largest term"),
        ("ATT-TIME-2", "Bound by memory, mostly loading weights"),
        ("ATT-TIME-3", "Bound by memory, mostly loading weights"),
        ("ATT-TIME-4", "Bound by communication"),
        ("ATT-TIME-5", "Bound by memory, mostly reading the KV cache (80.0% of the load time"),
    ],
)
def test_takeaway_names_the_seeds_bottleneck(case: str, bound: str) -> None:
    assert takeaway(spec_case(case).result()).startswith(bound)


def test_takeaway_without_hardware_states_the_intensity() -> None:
    # seed 000 ATT-TIME-1: 1,374,389,534,720 / 134,217,728 = 10,240 FLOPs per byte
    result = evaluate(resolve_inputs("single", params=dict(batch_size=4, seq_len=2048)))
    assert takeaway(result).startswith("Arithmetic intensity 10,240 FLOPs per byte loaded")


def test_templates_refuse_missing_values() -> None:
    with pytest.raises(jinja2.UndefinedError):
        _render("report.md.j2", title="only a title")


def test_table_checker_catches_a_short_row() -> None:
    with pytest.raises(AssertionError):
        assert_valid_tables("| a | b |\n|---|---|\n| 1 |\n")
    assert columns(r"| a \| b | c |") == 2


def test_ragged_report_shows_the_sums_and_the_max_over_mean_ratio() -> None:
    result = evaluate(
        resolve_inputs(
            "single", "decode", hardware="h100-sxm", params={"past_seq_len": [4096, 64, 64]}
        )
    )
    doc = derivation_report(result)
    assert_valid_tables(doc)
    section = doc[doc.index("## Ragged batch") : doc.index("## Results")]
    assert "3 requests with past lengths [4096, 64, 64] (mean 1,408, longest 4,096)" in section
    assert "max/mean = **2.909**" in section  # 4096 / 1408 = 2.90909...
    assert r"\sum_{i=1}^{B}" in section and r"{S_{\mathrm{past}}}^{(i)}" in section
    # KV: 16,384 bytes per position x 4224 positions, against 16,384 x 3 x 4096
    assert "| `kv_cache_per_chip` | 69,206,016 | 201,326,592 | 2.909× |" in section
    # Steps with one value per request list them; summed steps say so.
    assert "**per request: 4097, 65, 65**" in doc
    assert r"\sum_{i=1}^{3} 2 \times {S_{kv}}^{(i)} \times 2 \times 128 \times 32" in doc
    assert "| `past_seq_len` | $`S_{\\mathrm{past}}`$ | [4096, 64, 64] |" in doc


def test_a_uniform_batch_has_no_ragged_section() -> None:
    doc = derivation_report(evaluate(resolve_inputs("single", "decode")))
    assert "## Ragged batch" not in doc
