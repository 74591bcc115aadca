"""Rendering Markdown reports with Jinja2 (templates in ``reports/templates/``).

Templates only lay out strings prepared in ``derivation.py``; rendering is
deterministic (same inputs, same bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import jinja2

from shardcost.formulas import TIMINGS, Result
from shardcost.formulas.cases import CaseCheck, check_all
from shardcost.formulas.comparison import Comparison, by_chips

from .derivation import (
    cell,
    closed_forms,
    expected_results,
    notation,
    parameters,
    ragged_batch,
    sections,
    stated_assumptions,
    takeaway,
    text_value,
)
from .latex import significant
from .tables import chip_groups_line, chips_text, excluded, result_label
from .text import inline_math

TEMPLATES = Path(__file__).resolve().parent / "templates"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # Markdown, not HTML
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_ENV.filters["cell"] = cell
_ENV.filters["math"] = inline_math


def _render(template: str, **context: object) -> str:
    return _ENV.get_template(template).render(**context)


def _derivation_context(result: Result, plot: str | None) -> dict[str, object]:
    lay = result.inputs.layout
    return {
        "layout": lay.name,
        "summary": lay.summary,
        "phase": str(result.inputs.phase),
        "chips": text_value(result.chips),
        "parameters": parameters(result),
        "assumptions": stated_assumptions(result),
        "notation": notation(result),
        "sections": sections(result),
        "closed_forms": closed_forms(result),
        "results": expected_results(result),
        "takeaway": takeaway(result),
        "ragged": ragged_batch(result),
        "plot": plot,
    }


def derivation_report(result: Result, *, plot: str | None = None) -> str:
    """The Markdown derivation of one evaluated layout, in the seeds' format."""
    lay = result.inputs.layout
    title = f"{lay.name} {lay.layer}, {result.inputs.phase}"
    intro = (
        f"Derived by shardcost from the `{lay.name}` layout's symbolic cost; every number "
        "below is evaluated exactly from the formula beside it."
    )
    return _render("report.md.j2", title=title, intro=intro, **_derivation_context(result, plot))


def spec_report(check: CaseCheck) -> str:
    """The Markdown document of one spec case, ending with its seed check."""
    case = check.case
    comparisons = [
        (
            c.quantity,
            c.expected if c.approximate or isinstance(c.expected, str) else text_value(c.expected),
            "—" if c.got is None else text_value(c.got),
            c.ok,
        )
        for c in check.comparisons
    ]
    intro = (
        f"Seed test case **{case.name}** from `{case.seed}`: {case.title}. "
        f"Reproduce it with `shardcost spec check {case.name}`."
    )
    return _render(
        "spec.md.j2",
        title=f"{case.name} — {case.title}",
        intro=intro,
        seed=case.seed,
        comparisons=comparisons,
        **_derivation_context(check.result, None),
    )


def spec_file(name: str) -> str:
    """The file name of a spec case's document."""
    return f"{name}.md"


def spec_documents(checks: Sequence[CaseCheck] | None = None) -> dict[str, str]:
    """File name -> Markdown for every spec case, plus the index (README.md)."""
    checks = tuple(checks or check_all())
    docs = {spec_file(c.case.name): spec_report(c) for c in checks}
    rows = [
        (
            c.case.name,
            spec_file(c.case.name),
            c.case.title,
            c.case.layout,
            c.case.phase,
            c.case.seed,
            c.checked,
            c.ok,
        )
        for c in checks
    ]
    docs["README.md"] = _render("index.md.j2", cases=rows)
    return docs


def render_specs(out_dir: Path) -> list[Path]:
    """Write every spec document and the index into ``out_dir``; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in spec_documents().items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


_COMPARISON_ROWS = (
    ("chips", lambda r: text_value(r.chips)),
    ("FLOPs", lambda r: text_value(r.metrics.flops_per_chip)),
    ("weight bytes", lambda r: text_value(r.metrics.weight_memory_per_chip)),
    ("activation bytes", lambda r: text_value(r.metrics.activation_memory_per_chip)),
    ("KV-cache bytes", lambda r: text_value(r.metrics.kv_cache_per_chip)),
    ("memory bytes (all three)", lambda r: text_value(_memory(r))),
    ("communication bytes", lambda r: text_value(r.metrics.communication_bytes)),
)


def _memory(r: Result) -> int:
    m = r.metrics
    return m.weight_memory_per_chip + m.activation_memory_per_chip + m.kv_cache_per_chip


def comparison_takeaway(results: Sequence[Result]) -> str:
    """Which layout needs the least memory per chip, sends least, and (with timing) is
    fastest, among layouts on the same number of chips only: ranked within each chip count
    when they differ."""
    groups = [
        f"on {chips_text(n)}, "
        + (_ranking(group) if len(group) > 1 else f"`{result_label(group[0])}` alone")
        for n, group in by_chips(results)
    ]
    if len(groups) == 1:
        return groups[0][0].upper() + groups[0][1:] + "."
    return "\n".join(
        [
            "Ranked within each chip count, never across (give `--chips N` to put every "
            "layout on N chips):",
            "",
            *(f"- {line}" for line in groups),
        ]
    )


def _ranking(results: Sequence[Result]) -> str:
    """Least memory, least communication (on more than one chip), fastest: ``results`` all
    on the same number of chips."""

    def best(key: Callable[[Result], int], what: str, unit: str) -> str:
        top = min(results, key=key)
        return f"{what}: `{result_label(top)}` ({text_value(key(top))} {unit})"

    parts = [best(_memory, "least memory per chip", "bytes")]
    parallel = [r for r in results if r.chips > 1]
    if parallel:
        top = min(parallel, key=lambda r: r.metrics.communication_bytes)
        parts.append(
            f"least communication: `{result_label(top)}` "
            f"({text_value(top.metrics.communication_bytes)} bytes)"
        )
    if all(r.timing is not None for r in results):
        fastest = min(results, key=lambda r: r.timing.wall_clock_time_ms)  # type: ignore[union-attr]
        wall = fastest.timing.wall_clock_time_ms  # type: ignore[union-attr]
        parts.append(f"fastest: `{result_label(fastest)}` ({significant(wall)} ms)")
    return "; ".join(parts)


def comparison_report(
    comparisons: Sequence[Comparison], title: str, parameters_line: str, *, plot: str | None = None
) -> str:
    """Layouts side by side, one table per phase grouped by chip count, with a takeaway
    per phase that ranks only layouts on the same number of chips, and what is excluded."""
    phases = []
    for comparison in comparisons:
        results = sorted(comparison.results, key=lambda r: r.chips)
        rows = [(label, [get(r) for r in results]) for label, get in _COMPARISON_ROWS]
        if all(r.timing is not None for r in results):
            rows += [
                (name, [significant(getattr(r.timing, name)) for r in results]) for name in TIMINGS
            ]
        phases.append(
            {
                "name": str(comparison.phase),
                "layouts": [f"`{result_label(r)}`" for r in results],
                "groups": chip_groups_line(results, "markdown"),
                "rows": rows,
                "takeaway": comparison_takeaway(results),
                "excluded": [(f"`{label}`", why) for label, why in excluded(comparison)],
                "notes": [f"`{result_label(r)}`: {n}" for r in results for n in r.notes],
            }
        )
    first = comparisons[0].results[0].inputs
    return _render(
        "comparison.md.j2",
        title=title[0].upper() + title[1:],
        chips=comparisons[0].chips,
        budget=chips_text(comparisons[0].chips or 1),
        parameters=parameters_line,
        hardware=first.hardware.name if first.hardware else None,
        phases=phases,
        plot=plot,
    )
