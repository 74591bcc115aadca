"""Text and Markdown building blocks, and one evaluated layout as text.

Standard library only (not even dataclasses: they cost a cold start milliseconds): the
numeric commands render with it without loading SymPy (``shardcost.numeric``), and
``reports.tables`` renders the engine's results with the same functions, so the two can
never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

FORMATS = ("table", "markdown")

_PER_CHIP_ROWS = (
    ("FLOPs", "flops"),
    ("weight bytes", "weight_memory"),
    ("activation bytes", "activation_memory"),
    ("KV-cache bytes", "kv_cache"),
)


class Table(NamedTuple):
    """Headers, rows of text, and each column's alignment ('l' or 'r')."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: str

    def render(self, fmt: str) -> str:
        """The table as aligned plain text (``table``) or as Markdown (``markdown``)."""
        if fmt == "markdown":
            rule = tuple("---:" if a == "r" else "---" for a in self.align)
            lines = [self.headers, rule, *self.rows]
            return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
        widths = [
            max(len(row[i]) for row in (self.headers, *self.rows)) for i in range(len(self.headers))
        ]

        def line(cells: Sequence[str]) -> str:
            padded = (
                cell.rjust(w) if a == "r" else cell.ljust(w)
                for cell, w, a in zip(cells, widths, self.align, strict=True)
            )
            return "  ".join(padded).rstrip()

        return "\n".join([line(self.headers), *(line(row) for row in self.rows)])


# what the JSON objects' numbers are counted in (``units`` of every JSON answer)
UNITS = {
    "flops": "floating-point operations (a multiply-add is 2)",
    "memory": "bytes",
    "communication": "payload bytes per chip",
    "timing": "milliseconds",
}


def count(n: int) -> str:
    """An exact count with thousands separators, as the seeds write them."""
    return f"{n:,}"


GIB = 2**30


def size(n: int) -> str:
    """Exact bytes, then decimal GB and binary GiB, both named: what a reader compares
    with a datasheet (HBM "80GB" is 80 GiB) and with a tool that prints either."""
    return f"{n:,} bytes ({n / 1e9:,.2f} GB, {n / GIB:,.2f} GiB)"


def milliseconds(x: float) -> str:
    """A time in ms with four significant digits and no exponent."""
    if x == 0:
        return "0"
    digits = max(0, 3 - math.floor(math.log10(abs(x))))
    return f"{x:.{digits}f}"


def value(v: object) -> str:
    """A parameter value as the CLI takes it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def heading(text: str, fmt: str, level: int = 2) -> str:
    """A section heading: Markdown ``##`` or an underlined line."""
    return f"{'#' * level} {text}" if fmt == "markdown" else text


def item(text: str, fmt: str) -> str:
    """A line of a list: a Markdown bullet, or the plain line."""
    return f"- {text}" if fmt == "markdown" else text


def note_line(text: str, fmt: str) -> str:
    """A note: a Markdown quote, or a plain ``note:`` line."""
    return f"> **Note:** {text}" if fmt == "markdown" else f"note: {text}"


def uneven_note(
    total_name: str, total: int, parts_name: str, parts: int, what: str, replicates: bool
) -> str | None:
    """The note for ``total`` shared over ``parts`` chips, or None when it splits evenly."""
    if replicates and total < parts:
        return (
            f"{total_name}={total} is less than {parts_name}={parts}: each of the {total} "
            f"{what} is replicated on {parts // total} ranks (one per chip)"
        )
    if total % parts:
        low, more = divmod(total, parts)
        return (
            f"{total_name}={total} does not divide evenly by {parts_name}={parts}: per-chip "
            f"metrics describe the busiest chip ({what}: ceil({total}/{parts}) = {low + 1}); "
            f"totals add up every rank's share ({more} × {low + 1} and {parts - more} × {low}, "
            "as torch.tensor_split cuts)"
        )
    return None


def uneven_summary(
    total_name: str,
    parts_name: str,
    parts: int | None,
    what: str,
    fewer: bool,
    requests: int,
    batch: int,
    first: int,
) -> str:
    """The note for a split that many requests of a ragged batch, each at its own length,
    split unevenly (``fewer``: into fewer positions than ranks); ``parts`` None when the
    ranks differ among them; ``batch``: the requests in all; ``first``: the first such
    request's total."""
    over = parts_name if parts is None else f"{parts_name}={parts}"
    which = f"in {requests:,} of the {batch:,} requests (the first: {first})"
    if fewer:
        return (
            f"{total_name} is less than {over} {which}: each of their {what} is replicated "
            "over the ranks (one per chip)"
        )
    return (
        f"{total_name} does not divide evenly by {over} {which}: per-chip metrics describe "
        f"each request's busiest chip ({what}: the ceiling of its share); totals add up "
        "every rank's share, as torch.tensor_split cuts"
    )


def ragged_split_notes(
    found: Sequence[tuple[int, int, int, int, int]],
    splits: Sequence[tuple[str, str, str, bool]],
    batch: int,
) -> list[str]:
    """The uneven splits of a ragged batch, one note per split and kind (fewer positions
    than ranks, or an uneven split): the numbers themselves when every request concerned
    has the same, else how many have them (``uneven_summary``); in the order of their
    first requests. ``found``: (first request's place, split, total, parts, requests)
    each; ``splits[k]``: the split's two sides' names, what it splits, and whether fewer
    than ranks replicate."""
    groups: dict[tuple[int, bool], list[tuple[int, int, int, int, int]]] = {}
    for entry in sorted(found):
        _, k, total, parts, _ = entry
        fewer = splits[k][3] and total < parts
        groups.setdefault((k, fewer), []).append(entry)
    notes = []
    for (k, fewer), entries in sorted(groups.items(), key=lambda g: (g[1][0][0], g[0])):
        total_name, parts_name, what, replicates = splits[k]
        shapes = {(total, parts) for _, _, total, parts, _ in entries}
        first = entries[0]
        if len(shapes) == 1:
            note = uneven_note(total_name, first[2], parts_name, first[3], what, replicates)
        else:
            every = {parts for _, parts in shapes}
            note = uneven_summary(
                total_name,
                parts_name,
                first[3] if len(every) == 1 else None,
                what,
                fewer,
                sum(n for *_, n in entries),
                batch,
                first[2],
            )
        if note is not None:
            notes.append(note)
    return notes


def lone_note(what: str, parts_name: str, parts: int) -> str | None:
    """The note for a step one rank of ``parts`` holds (``symbolic.trace.Lone``), or None
    on one rank."""
    if parts <= 1:
        return None
    return (
        f"{what} sit on one rank of {parts_name}={parts}: per-chip metrics describe it; the "
        f"other {parts - 1} compute none, and totals count them once"
    )


def render_result(view: Mapping[str, Any], fmt: str) -> str:
    """One evaluated layout (``reports.tables.result_view``): parameters, metrics,
    collectives, timing, notes."""
    dims = "  ".join(f"{k}={value(v)}" for k, v in view["dims"])
    convs = "  ".join(f"{k}={value(v)}" for k, v in view["convs"])
    parts = [heading(view["title"], fmt, 1), "", item(f"parameters: {dims}", fmt)]
    if convs:
        parts.append(item(f"conventions: {convs}", fmt))
    parts.append(item(f"chips: {view['chips']}", fmt))
    metrics = view["metrics"]
    rows = tuple(
        (label, count(metrics[f"{key}_per_chip"]), count(metrics[f"{key}_total"]))
        for label, key in _PER_CHIP_ROWS
    )
    parts += ["", Table(("metric", "per chip", "total"), rows, "lrr").render(fmt)]
    comm_rows = tuple((name, kind, group, count(n)) for name, kind, group, n in view["collectives"])
    comm_rows += (("communication bytes", "", "", count(metrics["communication_bytes"])),)
    parts += [
        "",
        Table(("collective", "kind", "group", "bytes per chip"), comm_rows, "lllr").render(fmt),
    ]
    if view["timing"] is not None:
        rows = tuple((name, milliseconds(ms)) for name, ms in view["timing"].items())
        rows += (("arithmetic intensity (FLOPs/byte)", f"{view['intensity']:.4g}"),)
        parts += [
            "",
            heading(f"timing on {view['hardware']}", fmt, 3),
            "",
            Table(("timing", "ms"), rows, "lr").render(fmt),
        ]
    if view["extra"]:
        parts += ["", *view["extra"]]
    parts += [""] + [note_line(note, fmt) for note in view["notes"]]
    return "\n".join(parts).rstrip() + "\n"


def chips_text(n: int) -> str:
    """``1 chip``, ``4 chips``."""
    return f"{n} chip{'s' * (n != 1)}"


def chip_groups_text(chips: Sequence[int], fmt: str) -> str | None:
    """The sentence that says layouts on different numbers of chips are not ranked together."""
    counts = sorted(set(chips))
    if len(counts) < 2:
        return None
    shown = ", ".join(map(str, counts[:-1])) + f" and {counts[-1]}"
    flag = "`--chips N`" if fmt == "markdown" else "--chips N"
    return (
        f"Layouts run on {shown} chips: columns are grouped by chip count and compared only "
        f"within a group ({flag} puts every layout on N)"
    )


_TIMES = ("compute_time_ms", "load_time_ms", "communication_time_ms", "wall_clock_time_ms")


def render_comparison(view: Mapping[str, Any], fmt: str) -> str:
    """One phase's layouts side by side (``reports.tables.comparison_view``), grouped by
    chip count: chips, per-chip metrics, communication, time; then what cannot run on the
    budget, and notes."""
    columns = sorted(view["columns"], key=lambda c: c["chips"])
    headers = ("per chip", *(c["label"] for c in columns))
    rows = [("chips", *(count(c["chips"]) for c in columns))]
    for label, key in _PER_CHIP_ROWS:
        rows.append((label, *(count(c["metrics"][f"{key}_per_chip"]) for c in columns)))
    rows.append(
        ("communication bytes", *(count(c["metrics"]["communication_bytes"]) for c in columns))
    )
    if all(c["timing"] is not None for c in columns):
        for name in _TIMES:
            rows.append((name, *(milliseconds(c["timing"][name]) for c in columns)))
    table = Table(headers, tuple(rows), "l" + "r" * len(columns))
    parts = [heading(view["heading"], fmt, 2), ""]
    groups = chip_groups_text([c["chips"] for c in columns], fmt)
    if groups:
        parts += [item(groups, fmt), ""]
    parts += [table.render(fmt), ""]
    if view["excluded"]:
        parts += [f"excluded: {label} — {reason}" for label, reason in view["excluded"]] + [""]
    notes = sorted({f"{c['label']}: {n}" for c in columns for n in c["notes"]})
    return "\n".join(parts + [note_line(n, fmt) for n in notes]).rstrip() + "\n"


_MODEL_COLUMNS = (
    "flops_per_chip",
    "weight_memory_per_chip",
    "activation_memory_per_chip",
    "kv_cache_per_chip",
    "communication_bytes",
)


def render_model(view: Mapping[str, Any], fmt: str) -> str:
    """A whole model (``ModelResult.view``, or the fast path's ``numeric_model.answer``):
    its shape and parameters, each component, totals, memory, timing."""
    parts = [*_model_summary(view, fmt), "", _component_table(view, fmt), ""]
    parts += _model_totals(view, fmt)
    if view["timing"] is not None and view["hardware"] is not None:
        rows = tuple((name, milliseconds(ms)) for name, ms in view["timing"].items())
        parts += [
            "",
            heading(f"timing on {view['hardware']} (components in sequence)", fmt, 3),
            "",
            Table(("timing", "ms"), rows, "lr").render(fmt),
        ]
    parts += [""] + [note_line(note, fmt) for note in view["notes"]]
    return "\n".join(parts).rstrip() + "\n"


def _model_summary(view: Mapping[str, Any], fmt: str) -> list[str]:
    """The title, then the model's shape, parameter count, layouts and parameters in force."""
    c = view["summary"]
    p = view["parameters"]
    shape = dict(c["shape"])
    widths = ""
    if "head_dim" in shape:
        widths = f", {shape['num_heads']} heads ({shape['num_kv_heads']} KV) of {shape['head_dim']}"
    elif "kv_lora_rank" in shape:
        widths = (
            f", {shape['num_heads']} heads over a latent of {shape['kv_lora_rank']} + "
            f"{shape['qk_rope_head_dim']}"
        )
    if "intermediate_size" in shape:
        widths += f", d_ff={shape['intermediate_size']}"
    if "num_experts" in shape:
        widths += f", {shape['num_experts']} experts (top {shape['experts_per_token']})"
    # every layer plain attention and its channel mixer: no kinds to tell apart
    plain = len(c["blocks"]) == 1 and c["blocks"][0][0] == "attention"
    blocks = "" if plain else " (" + "; ".join(f"{n} × {kind}" for kind, n in c["blocks"]) + ")"
    layouts = ", ".join(
        dict.fromkeys(
            f"{row['layer']} {row['layout']}"
            for row in view["components"]
            if row["layer"] is not None
        )
    )
    hidden = set(view["hardware_fields"])
    shown = "  ".join(f"{k}={value(v)}" for k, v in view["params"].items() if k not in hidden)
    per_layer = "; ".join(
        f"{b['count']} × {count(b['per_layer'])} " + ("per layer" if plain else f"({b['kind']})")
        for b in p["blocks"]
    )
    tied = "tied embeddings" if c["tie_word_embeddings"] else "untied embeddings"
    return [
        heading(f"{c['name']} — {c['family']}, {view['phase']}", fmt, 1),
        "",
        item(
            f"shape: {c['num_layers']} layers{blocks}, d={c['hidden_size']}{widths}, "
            f"vocabulary {c['vocab_size']:,}, {c['dtype']}; {tied}",
            fmt,
        ),
        item(
            f"parameters: {count(p['total'])} (embedding {count(p['embedding'])}, "
            f"{per_layer}, final norm {count(p['final_norm'])}, LM head "
            f"{count(p['lm_head'])})",
            fmt,
        ),
        item(f"layouts: {layouts}; {chips_text(view['chips'])}", fmt),
        item(f"parameters in force: {shown}", fmt),
    ]


def _component_table(view: Mapping[str, Any], fmt: str) -> str:
    """One row per component on one chip, then the model's row."""
    timed = view["timing"] is not None
    headers = ("component", "count", "FLOPs", "weight bytes", "activation bytes", "KV bytes")
    headers += ("comm bytes",) + (("wall ms",) if timed else ())

    def row(
        name: str, number: str, m: Mapping[str, int], timing: Mapping[str, float] | None
    ) -> tuple[str, ...]:
        cells = (name, number, *(count(m[key]) for key in _MODEL_COLUMNS))
        if timed:
            cells += (milliseconds(timing["wall_clock_time_ms"]) if timing else "",)
        return cells

    rows = [row(r["name"], str(r["count"]), r["metrics"], r["timing"]) for r in view["components"]]
    rows.append(row("model (per chip)", "", view["metrics"], view["timing"]))
    return Table(headers, tuple(rows), "lr" + "r" * (len(headers) - 2)).render(fmt)


def _model_totals(view: Mapping[str, Any], fmt: str) -> list[str]:
    """Totals over the chips, and the memory one chip needs (and whether it fits)."""
    m = view["metrics"]
    mem = view["memory"]
    line = (
        f"memory per chip: weights {count(mem['weights_per_chip'])} + KV cache "
        f"{count(mem['kv_cache_per_chip'])} + peak activation "
        f"{count(mem['peak_activation_per_chip'])} = {size(mem['total_per_chip'])}"
    )
    capacity = mem["capacity_per_chip"]
    if capacity is not None:
        spare = capacity - mem["total_per_chip"]
        if spare >= 0:
            line += f"; fits in {size(capacity)}, {size(spare)} to spare"
        else:
            line += f"; does NOT fit in {size(capacity)}: {size(-spare)} short"
    return [
        item(
            "Each row is one instance of a component on one chip; the model row adds "
            f"count × row. Totals over {chips_text(view['chips'])}: FLOPs "
            f"{count(m['flops_total'])}, weights {count(m['weight_memory_total'])}, KV "
            f"{count(m['kv_cache_total'])}",
            fmt,
        ),
        item(line, fmt),
    ]


def inline_math(latex: str) -> str:
    """Inline math as GitHub renders it: ``$`…`$``. Inside the code span the LaTeX reaches
    the math renderer as written; in plain ``$…$`` Markdown first eats the escapes
    (``\\_``, ``\\\\``, ``\\:``)."""
    if "`" in latex:
        raise ValueError(f"a backtick in LaTeX cannot sit in a code span: {latex!r}")
    return f"$`{latex}`$"
