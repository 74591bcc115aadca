"""Plans as text and Markdown: one plan (``model --plan``), or a search (``plan``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shardcost.planning import (
    COLLECTIVES,
    DEFINITIONS,
    GIB,
    PlannedModel,
    PlanResult,
    PlanSearch,
    Workload,
)

from .text import Table, heading, item

_HEADERS = (
    "plan",
    "chips",
    "memory/chip GB (GiB)",
    "TTFT ms",
    "TPOT ms",
    "tok/s/chip",
    "requests fit",
    "bottleneck",
)


def _gb(n: int | None) -> str:
    """Decimal GB, then GiB in parentheses (a table column says "GB (GiB)")."""
    return "—" if n is None else f"{n / 1e9:,.1f} ({n / GIB:,.1f})"


def _size(n: int) -> str:
    return f"{n / 1e9:,.1f} GB ({n / GIB:,.1f} GiB)"


def _capacity(hw: Any) -> str:
    if hw.capacity_bytes is None:
        return "capacity (not given: nothing is checked)"
    return _size(hw.capacity_bytes)


def _ms(x: float) -> str:
    return f"{x:,.3f}" if x < 100 else f"{x:,.1f}"


def _row(r: PlanResult) -> tuple[str, ...]:
    s = r.serving
    fit = "—" if s.requests_fit is None else f"{s.requests_fit:,}"
    return (
        r.plan.label,
        str(r.plan.chips),
        _gb(r.memory.used),
        _ms(s.ttft_ms),
        _ms(s.tpot_ms),
        f"{s.tokens_per_s_per_chip:,.1f}",
        fit,
        s.bottleneck,
    )


def _table(results: tuple[PlanResult, ...] | list[PlanResult], fmt: str) -> str:
    return Table(_HEADERS, tuple(_row(r) for r in results), "lrrrrrrl").render(fmt)


def _counts(found: dict[str, int]) -> str:
    return "; ".join(f"{n}: {why}" for why, n in sorted(found.items(), key=lambda kv: -kv[1]))


def _workload(w: Workload) -> str:
    return (
        f"{w.concurrency} request{'s' if w.concurrency != 1 else ''} of "
        f"{w.prompt:,} prompt + {w.output:,} output tokens"
    )


def search_text(
    found: PlanSearch, fmt: str, *, every: bool = False, plot: str | None = None
) -> str:
    """The search: what was tried and dropped, the Pareto front, the best per objective,
    the definitions."""
    hw, w = found.hardware, found.workload
    lines = [
        heading(f"{found.config.name} on {found.chips} × {hw.name}: plans", fmt, 1),
        "",
        item(f"workload: {_workload(w)}", fmt),
        item(
            f"memory: usable {float(1 - found.reserve):.0%} of each chip's {_capacity(hw)} "
            f"(a {float(found.reserve):.0%} runtime reserve)",
            fmt,
        ),
    ]
    limits = found.limits
    shown = [
        f"TPOT ≤ {limits.max_tpot_ms:g} ms" if limits.max_tpot_ms is not None else "",
        f"TTFT ≤ {limits.max_ttft_ms:g} ms" if limits.max_ttft_ms is not None else "",
        f"context ≥ {limits.min_context:,} tokens" if limits.min_context else "",
    ]
    if any(shown):
        lines.append(item("limits: " + ", ".join(s for s in shown if s), fmt))
    dropped = [
        (sum(found.invalid.values()), "cannot run the model", found.invalid),
        (sum(found.too_big.values()), "do not fit", found.too_big),
        (sum(found.over_limits.values()), "miss a limit", found.over_limits),
    ]
    lines.append(
        item(
            f"{found.tried} plans tried; {len(found.results)} fit"
            + "".join(f"; {n} {what}" for n, what, _ in dropped if n),
            fmt,
        )
    )
    for n, what, reasons in dropped:
        if n and reasons is found.too_big:
            for why, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
                plans = sorted(found.too_big_plans[why], key=lambda pn: pn[1])
                shown = plans if every else plans[:6]
                named = ", ".join(f"{p} {b / 1e9:,.1f} GB" for p, b in shown)
                more = f", and {len(plans) - 6} more (--all)" if len(plans) > len(shown) else ""
                lines.append(item(f"{what} ({count}): {why}: {named}{more}", fmt))
        elif n:
            lines.append(item(f"{what}: {_counts(reasons)}", fmt))
    lines.append("")
    if not found.results:
        lines.append(
            "No plan fits and meets the limits: try more chips, a smaller workload, "
            "or element types that take less (weight_dtype=fp8, kv_cache_dtype=fp8)."
        )
        return "\n".join(lines) + "\n"
    lines += [heading("Pareto front: TPOT against tokens/s per chip", fmt, 2), ""]
    lines += [_table(found.front, fmt), ""]
    if plot:
        lines += [f"![plans: TPOT against tokens/s per chip]({plot})", ""]
    lines += [heading("Best plan per objective", fmt, 2), ""]
    words = {"throughput": "most tokens/s per chip", "tpot": "lowest TPOT", "ttft": "lowest TTFT"}
    for name, r in found.best.items():
        s = r.serving
        layouts = ", ".join(f"{k} {v}" for k, v in r.layouts.items())
        lines.append(
            item(
                f"{words[name]}: {r.plan.label} — {s.tokens_per_s_per_chip:,.1f} tokens/s per "
                f"chip, TPOT {_ms(s.tpot_ms)} ms, TTFT {_ms(s.ttft_ms)} ms, "
                f"{_size(r.memory.used)} per chip; bottleneck {s.bottleneck} ({layouts})",
                fmt,
            )
        )
    if every:
        ordered = sorted(found.results, key=lambda r: -r.serving.tokens_per_s_per_chip)
        lines += ["", heading(f"Every plan that fits ({len(ordered)})", fmt, 2), ""]
        lines.append(_table(ordered, fmt))
    lines += ["", heading("Definitions", fmt, 2), ""]
    lines += [item(d, fmt) for d in DEFINITIONS]
    return "\n".join(lines) + "\n"


def planned_text(planned: PlannedModel, fmt: str) -> str:
    """One plan in full: layouts, pipeline, memory per chip, serving figures."""
    r, hw, w = planned.result, planned.hardware, planned.workload
    m, p, s = r.memory, r.pipeline, r.serving
    layouts = ", ".join(f"{k} {v}" for k, v in r.layouts.items())
    lines = [
        heading(
            f"{planned.config.name} — plan {r.plan.label} on {r.plan.chips} × {hw.name}", fmt, 1
        ),
        "",
        item(f"layouts: {layouts}", fmt),
        item(
            f"pipeline: {p.stages} stage{'s' if p.stages > 1 else ''} of "
            f"{', '.join(map(str, p.layers_per_stage))} layers; {p.schedule}"
            + (f" ({p.chunks} chunks per stage)" if p.chunks > 1 else "")
            + f", {p.microbatches} microbatch{'es' if p.microbatches > 1 else ''} of "
            f"{p.microbatch_requests} request{'s' if p.microbatch_requests > 1 else ''}; bubble "
            f"{p.bubble_fraction:.1%}"
            + (
                f"; stage-to-stage {p.p2p_bytes_prefill:,} bytes per prefill microbatch, "
                f"{p.p2p_bytes_decode:,} per decode step; a training step would hold "
                f"{p.in_flight_training:g} microbatches' activations"
                if p.stages > 1
                else ""
            ),
            fmt,
        ),
        "",
        heading("Memory per chip (the busiest stage)", fmt, 2),
        "",
    ]
    rows = [
        ("weights", m.weights),
        ("KV cache (every request, longest context)", m.kv_cache),
        ("largest activation", m.activations),
        ("total", m.used),
    ]
    if m.capacity is not None:
        rows += [("usable (capacity less the reserve)", m.usable), ("capacity", m.capacity)]
    table = Table(
        ("", "bytes", "GB", "GiB"),
        tuple((k, f"{v:,}", f"{v / 1e9:,.2f}", f"{v / GIB:,.2f}") for k, v in rows),  # type: ignore[operator]
        "lrrr",
    )
    lines += [table.render(fmt), ""]
    if m.fits is not None:
        verdict = "fits" if m.fits else "does NOT fit"
        lines.append(
            f"{verdict}: {m.used / 1e9:,.2f} GB of {m.usable / 1e9:,.2f} GB usable "  # type: ignore[operator]
            f"({float(m.reserve):.0%} of {_size(m.capacity)} reserved for the runtime)"  # type: ignore[arg-type]
        )  # type: ignore[operator]
        lines.append("")
    lines += [heading(f"Serving: {_workload(w)}", fmt, 2), ""]
    serving = Table(
        ("figure", "value"),
        (
            ("TTFT ms", _ms(s.ttft_ms)),
            ("TPOT ms", _ms(s.tpot_ms)),
            ("end to end ms", _ms(s.e2e_ms)),
            ("tokens/s (system)", f"{s.tokens_per_s:,.1f}"),
            ("tokens/s per chip", f"{s.tokens_per_s_per_chip:,.1f}"),
            ("decode tokens/s", f"{s.decode_tokens_per_s:,.1f}"),
            (
                "requests of this shape that fit",
                "—" if s.requests_fit is None else f"{s.requests_fit:,}",
            ),
            ("bottleneck", s.bottleneck),
        ),
        "lr",
    )
    lines += [serving.render(fmt), ""]
    if r.collectives:
        lines += [heading("Collectives per chip", fmt, 2), "", _collectives(r, fmt), ""]
    lines += [item(d, fmt) for d in (*DEFINITIONS, *((COLLECTIVES,) if r.collectives else ()))]
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines) + "\n"


def _collectives(r: PlanResult, fmt: str) -> str:
    """Each stage's collectives in each phase, then the stage-to-stage sends."""
    rows = tuple(
        (
            c["phase"],
            "—" if c["stage"] is None else str(c["stage"]),
            c["component"],
            c["name"],
            c["kind"],
            c["group"],
            f"{c['count']:,}",
            f"{c['bytes_per_chip']:,}",
        )
        for c in r.collectives
    )
    headers = ("phase", "stage", "component", "collective", "kind", "group", "times", "bytes each")
    return Table(headers, rows, "lrllllrr").render(fmt)


def write_front_plot(found: PlanSearch, path: Path) -> None:
    """Every plan that fits as a point (TPOT, tokens/s per chip), the front joined."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        from shardcost.errors import InputError

        raise InputError("--plot needs matplotlib: pip install 'shardcost[plots]'") from exc
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [r.serving.tpot_ms for r in found.results]
    ys = [r.serving.tokens_per_s_per_chip for r in found.results]
    ax.scatter(xs, ys, s=14, color="#999999", label="plans that fit")
    fx = [r.serving.tpot_ms for r in found.front]
    fy = [r.serving.tokens_per_s_per_chip for r in found.front]
    ax.plot(fx, fy, "o-", color="#1f77b4", label="Pareto front")
    for r in found.front:
        ax.annotate(
            r.plan.label,
            (r.serving.tpot_ms, r.serving.tokens_per_s_per_chip),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )
    ax.set_xlabel("TPOT (ms)")
    ax.set_ylabel("output tokens/s per chip")
    ax.set_title(f"{found.config.name} on {found.chips} × {found.hardware.name}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg")
    plt.close(fig)
