"""Verification results as terminal text or JSON (presentation only)."""

from __future__ import annotations

from typing import Any

from shardcost.formulas.invariants import LayoutVerification
from shardcost.symbolic.dimensions import BY_SYMBOL, DIMENSIONS
from shardcost.symbolic.text import one_line
from shardcost.symbolic.verify import Verdict, VerdictStatus, verdict_counts


def _status(v: Verdict) -> str:
    if v.status is VerdictStatus.CHECKED:
        return f"checked at {v.points} points"
    return "FAILED" if v.status is VerdictStatus.FAILED else str(v.status)


def _point(point: dict) -> str:
    """name=value pairs in notation order."""
    return " ".join(f"{dim.name}={point[dim.symbol]}" for dim in DIMENSIONS if dim.symbol in point)


def _conventions(result: LayoutVerification) -> str:
    applicable = result.layout.conventions_for(result.phase)
    values = result.conventions.as_dict()
    shown = [f"{k}={str(values[k]).lower()}" for k in applicable]
    return f" [{' '.join(shown)}]" if shown else ""


def _preamble(results: tuple[LayoutVerification, ...]) -> str:
    """The layers' relations every claim of theirs assumes, stated once."""
    relations = "; ".join(dict.fromkeys(w for r in results for w in r.relations))
    even = "conservation assumes even splits where stated."
    return f"Every claim assumes {relations}; {even}" if relations else even.capitalize()


def _verdict_lines(v: Verdict, relations: tuple[str, ...]) -> list[str]:
    """One verdict: its status and statement, then what it shows, how it failed, and what
    it assumes beyond the relations stated at the top."""
    pad = f"  {'':22}   "
    lines = [f"  {_status(v):22} {v.claim.name}: {v.claim.statement}"]
    if v.claim.shown is not None:
        lines.append(f"{pad}repeated: {one_line(v.claim.shown)}")
    if v.status is VerdictStatus.FAILED:
        if v.residual is not None:
            lines.append(f"{pad}{v.term}: residual {one_line(v.residual)}")
        if v.counterexample is not None and v.sides is not None:
            lhs, rhs = v.sides
            where = f"{_point(v.counterexample)}: " if v.counterexample else ""
            lines.append(f"{pad}counterexample: {where}{v.term} = {lhs}, expected {rhs}")
    extra = [a for a in v.assumed if a not in relations]
    if extra:
        lines.append(f"{pad}assuming {'; '.join(extra)}")
    return lines


def verification_text(results: tuple[LayoutVerification, ...], seconds: float) -> str:
    """Every verdict, grouped by layout and phase, then a summary line."""
    lines = [_preamble(results), ""]
    for result in results:
        lay = result.layout
        lines.append(f"{lay.name} · {lay.layer} · {result.phase}{_conventions(result)}")
        for v in result.verdicts:
            lines += _verdict_lines(v, result.relations)
        for s in result.statements:
            lines.append(f"  {'stated':22} {s.name}: {s.text} = {one_line(s.expr)}")
    counts = verdict_counts([v for r in results for v in r.verdicts])
    proved, checked, failed = (
        counts[s] for s in (VerdictStatus.PROVED, VerdictStatus.CHECKED, VerdictStatus.FAILED)
    )
    lines.append(
        f"\n{len(results)} layout-phase checks, {sum(counts.values())} invariants: {proved} "
        f"proved, {checked} checked at points, {failed} failed ({seconds:.2f} s)"
    )
    return "\n".join(lines) + "\n"


def verification_json(results: tuple[LayoutVerification, ...]) -> list[dict[str, Any]]:
    """Every verdict as JSON-ready data."""
    out = []
    for result in results:
        verdicts = []
        for v in result.verdicts:
            entry: dict[str, Any] = {
                "invariant": v.claim.name,
                "statement": v.claim.statement,
                "status": str(v.status),
                "assumptions": list(v.assumed),
            }
            if v.status is VerdictStatus.CHECKED:
                entry["points"] = v.points
            if v.claim.shown is not None:
                entry["repeated"] = one_line(v.claim.shown)
            if v.status is VerdictStatus.FAILED:
                entry["term"] = v.term
                entry["residual"] = one_line(v.residual) if v.residual is not None else None
                if v.counterexample is not None and v.sides is not None:
                    entry["counterexample"] = {
                        BY_SYMBOL[s].name: n for s, n in v.counterexample.items()
                    }
                    entry["values"] = [str(v.sides[0]), str(v.sides[1])]
            verdicts.append(entry)
        out.append(
            {
                "layout": result.layout.name,
                "layer": result.layout.layer,
                "phase": str(result.phase),
                "conventions": {
                    k: v
                    for k, v in result.conventions.as_dict().items()
                    if k in result.layout.conventions_for(result.phase)
                },
                "ok": result.ok,
                "verdicts": verdicts,
                "statements": [
                    {"name": s.name, "text": s.text, "expression": one_line(s.expr)}
                    for s in result.statements
                ],
            }
        )
    return out
