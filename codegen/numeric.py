"""Straight-line programs for the numeric commands, generated once and cached on disk.

``shardcost metrics`` evaluated by the engine loads SymPy and every layout's formulas
(about half a second). After one such run, this module writes a small Python module
for the same layout, layer, phase, hardware and conventions: the derivation's steps,
one line each, in exact Python integers and ``Fraction``s, with the inputs' defaults,
relations and divisibility requirements, the uneven-split notes and the static text
(title, conventions, hardware fields, collectives). ``shardcost.numeric`` runs it
without importing SymPy, and renders with the same functions (``reports.text``).

The program answers only what it is sure of: any input it does not expect, any check
that fails, any count that is not a whole number returns None, and the command runs
the engine instead, which gives the one-line error a user should read. So the fast
answer is either the engine's answer, digit for digit, or no answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction

import sympy

from shardcost.formulas.dtypes import DEFAULT as DTYPE_DEFAULT
from shardcost.formulas.dtypes import DTYPES
from shardcost.formulas.evaluate import UNITS, Result
from shardcost.formulas.hardware import NUMERIC_FIELDS, PEAK_TFLOPS
from shardcost.formulas.inputs import DEFAULT_FROM, describe
from shardcost.formulas.registry import relations_for
from shardcost.reports.tables import result_view
from shardcost.symbolic.dimensions import BY_NAME, DIMENSIONS
from shardcost.symbolic.functions import CeilLog2

FORMAT = 2  # bump when the generated module's interface changes


# A node the exact printer does not know raises NotImplementedError: no program is written,
# and the engine keeps answering. (Not an error of ours: every one of those is in errors.py.)
Unsupported = NotImplementedError


class _Exact:
    """SymPy expressions as exact Python: ints stay ints, other rationals are Fractions."""

    def __init__(self, names: Mapping[sympy.Symbol, str]) -> None:
        self.names = names

    def __call__(self, expr: sympy.Basic) -> str:
        return self.print(expr)

    def print(self, e: sympy.Basic) -> str:
        if e.is_Symbol:
            if e not in self.names:
                raise Unsupported(f"symbol {e}")
            return self.names[e]
        if e.is_Integer:
            return f"({int(e)})"
        if e.is_Rational:
            return f"_F({int(e.p)}, {int(e.q)})"
        if e is sympy.true:
            return "True"
        if e is sympy.false:
            return "False"
        if isinstance(e, sympy.Add):
            return "(" + " + ".join(self.print(a) for a in e.args) + ")"
        if isinstance(e, sympy.Mul):
            num, den = [], []
            for a in e.args:
                if a.is_Pow and a.exp.is_Integer and a.exp < 0:
                    den.append(self.print(a.base) if a.exp == -1 else self._pow(a.base, -a.exp))
                elif a.is_Rational and not a.is_Integer:
                    num.append(str(int(a.p)))
                    den.append(str(int(a.q)))
                else:
                    num.append(self.print(a))
            top = " * ".join(num) or "1"
            if not den:
                return f"({top})"
            return f"_div({top}, {' * '.join(den)})"
        if isinstance(e, sympy.Pow):
            if e.exp.is_Integer and e.exp > 0:
                return self._pow(e.base, e.exp)
            if e.exp.is_Integer:
                return f"_div(1, {self._pow(e.base, -e.exp)})"
            if e.exp.is_Rational:  # a root: not exact in Python numbers
                raise Unsupported(f"power {e}")
            return f"_pow({self.print(e.base)}, {self.print(e.exp)})"  # whole at run time
        if isinstance(e, CeilLog2):
            return f"_clog2({self.print(e.args[0])})"
        if isinstance(e, sympy.ceiling):
            return f"_ceil({self.print(e.args[0])})"
        if isinstance(e, sympy.floor):
            return f"_floor({self.print(e.args[0])})"
        if isinstance(e, sympy.Mod):  # an uneven split's ranks with one more
            return f"({self.print(e.args[0])} % {self.print(e.args[1])})"
        if isinstance(e, sympy.Max):
            return f"max({', '.join(self.print(a) for a in e.args)})"
        if isinstance(e, sympy.Min):
            return f"min({', '.join(self.print(a) for a in e.args)})"
        if isinstance(e, sympy.Piecewise):
            out = "_nothing()"  # SymPy leaves such a Piecewise unevaluated: no number
            for value, cond in reversed(e.args):
                out = f"({self.print(value)} if {self.print(cond)} else {out})"
            return out
        if isinstance(e, sympy.core.relational.Relational):
            ops = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}
            if e.rel_op not in ops:
                raise Unsupported(f"relation {e}")
            return f"({self.print(e.lhs)} {ops[e.rel_op]} {self.print(e.rhs)})"
        if isinstance(e, sympy.And):
            return "(" + " and ".join(self.print(a) for a in e.args) + ")"
        if isinstance(e, sympy.Or):
            return "(" + " or ".join(self.print(a) for a in e.args) + ")"
        if isinstance(e, sympy.Not):
            return f"(not {self.print(e.args[0])})"
        raise Unsupported(f"{type(e).__name__}: {e}")

    def _pow(self, base: sympy.Basic, exp: sympy.Integer) -> str:
        return f"({self.print(base)} ** {int(exp)})"


def _literal(value: object) -> str:
    """A JSON-ready value as a Python literal (text through ``repr``: data, never code)."""
    if isinstance(value, Fraction):
        return repr(int(value) if value.denominator == 1 else float(value))
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value)
    raise Unsupported(f"a parameter of type {type(value).__name__}")


def _fraction(value: object) -> str:
    """An exact number as a ``Fraction`` literal of the generated module."""
    q = Fraction(value)  # type: ignore[arg-type]
    return f"_F({q.numerator}, {q.denominator})"


def _json_value(value: object) -> object:
    return (
        int(value)
        if isinstance(value, Fraction) and value.denominator == 1
        else (float(value) if isinstance(value, Fraction) else value)
    )


_IMPORTS = [
    "from fractions import Fraction as _F",
    "from math import ceil as _ceil, floor as _floor",
    "",
    "from shardcost.numeric import div as _div, nothing as _nothing, power as _pow",
    "from shardcost.numeric import ceil_log2 as _clog2, resolve as _resolve, whole as _whole",
    "from shardcost.reports.text import lone_note as _lone",
    "from shardcost.reports.text import uneven_note as _uneven",
]
_TAIL = [
    "    dims = [(k, d[k]) for k in USED]",
    "    view = {",
    "        'title': TITLE,",
    "        'dims': dims,",
    "        'convs': list(CONVS),",
    "        'chips': _chips,",
    "        'metrics': metrics,",
    "        'collectives': [(*c, n) for c, n in zip(COLLECTIVES, coll)],",
    "        'timing': timing,",
    "        'hardware': HARDWARE if timing is not None else None,",
    "        'intensity': intensity,",
    "        'extra': [],",
    "        'notes': notes,",
    "    }",
    "    out = {'layout': LAYOUT, 'layer': LAYER, 'phase': PHASE,",
    "           'params': {**dict(dims), **STATIC_PARAMS}, 'chips': _chips,",
    "           'metrics': metrics,",
    "           'collectives': [{'name': c[0], 'kind': c[1], 'group': c[2],",
    "                            'bytes_per_chip': n} for c, n in zip(COLLECTIVES, coll)],",
    "           'notes': list(notes)}",
    "    if timing is not None:",
    "        out['timing'] = timing",
    "    out['units'] = UNITS",
    "    return view, out",
    "",
]


def metrics_source(result: Result) -> str:
    """The program of ``result``'s layout, phase, conventions and hardware, as a module
    with ``run(given)``: ``given`` maps dimension names to positive ints; the answer is
    ``(view, json)`` for ``reports.text.render_result`` and ``--format json``, or None.

    Raises Unsupported when the derivation holds something the exact printer does not
    print (then no program is cached, and the engine keeps answering)."""
    if result.inputs.ragged is not None:
        raise Unsupported("a ragged batch")
    program = _Program(result)
    body = [
        *program.inputs(),
        *program.requirements(),
        *program.hardware(),
        *program.steps(),
        *program.metrics(),
        *program.notes(),
        *program.timing(),
    ]
    lines = [
        f"# Generated by shardcost {FORMAT}: {result.inputs.layout.layer} layout, "
        f"{result.inputs.phase}.",
        "# Exact: ints and Fractions; a failed check or an uncertain number returns None.",
        *_IMPORTS,
        "",
        *program.constants(),
        "",
        "",
        "def run(given):",
        *body,
        *_TAIL,
    ]
    source = "\n".join(lines)
    compile(source, "<shardcost numeric program>", "exec")  # a syntax error is ours: fail here
    return source


class _Program:
    """The parts of one generated program, each a few lines of ``run``'s body."""

    def __init__(self, result: Result) -> None:
        self.result = result
        self.inputs_ = result.inputs
        self.cost = result.inputs.cost
        self.base = self.cost.derivation  # requirements and splits (timing adds none)
        self.used = tuple(dim for dim in DIMENSIONS if dim.name in self.inputs_.dims)
        self.names: dict[sympy.Symbol, str] = {dim.symbol: f"d_{dim.name}" for dim in self.used}
        self.print = _Exact(self.names)

    def constants(self) -> list[str]:
        """Module constants: how inputs are completed, and the text around the numbers."""
        inputs = self.inputs_
        relations = relations_for(inputs.layout, {d.symbol for d in self.used})
        view = result_view(self.result, "table")
        static = {k: _json_value(v) for k, v in inputs.params().items() if k not in inputs.dims}
        collectives = tuple((c.name, str(c.kind), str(c.group)) for c in self.cost.collectives)
        return [
            f"USED = {tuple(d.name for d in self.used)!r}",
            f"DEFAULTS = { ({d.name: d.default for d in DIMENSIONS})!r}",
            f"BORROWED = {tuple(DEFAULT_FROM.items())!r}",
            f"RELATIONS = {tuple(tuple(d.name for d in r.dimensions) for r in relations)!r}",
            f"TITLE = {view['title']!r}",
            f"CONVS = {tuple(view['convs'])!r}",
            "STATIC_PARAMS = {"
            + ", ".join(f"{k!r}: {_literal(v)}" for k, v in static.items())
            + "}",
            f"COLLECTIVES = {collectives!r}",
            f"HARDWARE = {view['hardware']!r}",
            f"LAYOUT = {inputs.layout.name!r}",
            f"LAYER = {inputs.layout.layer!r}",
            f"UNITS = {UNITS!r}",
            f"PHASE = {str(inputs.phase)!r}",
        ]

    def inputs(self) -> list[str]:
        """The dimensions, completed as ``formulas.inputs`` completes them."""
        return [
            "    d = _resolve(given, USED, DEFAULTS, RELATIONS, BORROWED)",
            "    if d is None:",
            "        return None",
            *(f"    {self.names[dim.symbol]} = d[{dim.name!r}]" for dim in self.used),
        ]

    def requirements(self) -> list[str]:
        """The layer's requirements: total % parts == 0 (or parts % total, ``either``)."""
        lines = []
        for i, req in enumerate(self.base.requirements):
            total = self.print(self.base.resolve(req.total))
            parts = self.print(self.base.resolve(req.parts))
            test = f"_t{i} % _p{i} == 0" + (f" or _p{i} % _t{i} == 0" if req.either else "")
            lines += [
                f"    _t{i}, _p{i} = int({total}), int({parts})",
                f"    if _p{i} == 0 or _t{i} == 0 or not ({test}):",
                "        return None",
            ]
        return lines

    def hardware(self) -> list[str]:
        """The chip's figures as exact constants; the peak its operands' width picks."""
        hw = self.inputs_.hardware
        if hw is None:
            return []
        b = self.names.get(BY_NAME["bytes_per_elem"].symbol, "2")
        sizes = []
        for tensor in ("weight", "activation"):
            dtype = getattr(self.inputs_.conventions, f"{tensor}_dtype", DTYPE_DEFAULT)
            sizes.append(f"_F({b})" if dtype == DTYPE_DEFAULT else _fraction(DTYPES[dtype].bytes))
        lines = []
        for f in NUMERIC_FIELDS:
            if f.symbol != PEAK_TFLOPS.symbol:
                self.names[f.symbol] = f"h_{f.name}"
                lines.append(f"    h_{f.name} = {_fraction(getattr(hw, f.name))}")
        self.names[PEAK_TFLOPS.symbol] = "h_peak"
        fp8 = hw.peak_tflops_fp8
        return [
            *lines,
            f"    _cb = max({', '.join(sizes)})",  # as Hardware.peak_for decides
            f"    _fp8 = {'None' if fp8 is None else _fraction(fp8)}",
            f"    h_peak = _fp8 if _cb <= 1 and _fp8 is not None else {_fraction(hw.peak_tflops)}",
        ]

    def steps(self) -> list[str]:
        """The derivation's steps, one line each (with timing steps when timed)."""
        steps = self.result.derivation.steps
        self.names.update({step.symbol: f"s{i}" for i, step in enumerate(steps)})
        return [f"    s{i} = {self.print(step.expr)}" for i, step in enumerate(steps)]

    def metrics(self) -> list[str]:
        """The nine metrics and each collective's bytes: whole numbers of at least 0."""
        cost, p = self.cost, self.print
        whole = [cost.flops, cost.weight_bytes, cost.activation_bytes, cost.kv_cache_bytes]
        keys = ("flops", "weight_memory", "activation_memory", "kv_cache")
        return [
            f"    _chips = _whole({p(cost.chips)})",
            "    per = tuple(map(_whole, (" + ", ".join(p(s) for s in whole) + ",)))",
            f"    comm = _whole({p(cost.communication_bytes)})",
            "    coll = tuple(map(_whole, ("
            + "".join(f"{p(c.symbol)}, " for c in cost.collectives)
            + ")))",
            "    tot = tuple(map(_whole, (" + ", ".join(p(cost.totals[k]) for k in keys) + ",)))",
            "    for v in (_chips, *per, *tot, comm, *coll):",
            "        if type(v) is not int or v < 0:",
            "            return None",
            "    metrics = {",
            *(f"        {k + '_per_chip'!r}: per[{i}]," for i, k in enumerate(keys)),
            *(f"        {k + '_total'!r}: tot[{i}]," for i, k in enumerate(keys)),
            "        'communication_bytes': comm,",
            "    }",
        ]

    def notes(self) -> list[str]:
        """One note per uneven split, worded by ``reports.text.uneven_note``."""
        lines = ["    notes = []"]
        for split in self.base.splits:
            total_name = describe(split.total, self.base)
            parts_name = describe(split.parts, self.base)
            lines += [
                f"    _t, _p = {self.print(split.total)}, {self.print(split.parts)}",
                "    if type(_t) is not int or type(_p) is not int or _t < 1 or _p < 1:",
                "        return None",
                f"    _n = _uneven({total_name!r}, _t, {parts_name!r}, _p, {split.what!r}, "
                f"{bool(split.replicates)!r})",
                "    if _n is not None:",
                "        notes.append(_n)",
            ]
        for lone in self.base.lone:
            lines += [
                f"    _p = {self.print(lone.parts)}",
                "    if type(_p) is not int or _p < 1:",
                "        return None",
                f"    _n = _lone({lone.what!r}, {describe(lone.parts, self.base)!r}, _p)",
                "    if _n is not None:",
                "        notes.append(_n)",
            ]
        return lines

    def timing(self) -> list[str]:
        """The four times (exact, then float, as ``Result`` rounds them) and the
        arithmetic intensity, when timed."""
        model = self.result.model
        if self.result.timing is None or self.inputs_.hardware is None or model is None:
            return ["    timing = None", "    intensity = None"]
        times = ", ".join(self.print(s) for s in model.times.values())
        reads = self.cost.weight_reads
        weights = "per[1]" if reads is None else f"int({self.print(reads)})"  # as Result does
        decode = " + per[3]" if str(self.inputs_.phase) == "decode" else ""
        return [
            f"    times = tuple(float(_F(t)) for t in ({times},))",
            f"    _loaded = {weights}{decode}",
            "    if type(_loaded) is not int or _loaded <= 0:",
            "        return None",
            "    intensity = float(_F(per[0], _loaded))",
            f"    timing = dict(zip({tuple(model.times)!r}, times))",
        ]


# ------------------------------------------------------------ ragged decode batches


def ragged_source(result: Result) -> str:
    """The program of ``result``'s layout for ragged decode batches (``result`` one): a
    module with ``run(given, lengths)`` giving ``(view, json)`` as ``metrics_source``'s
    ``run`` does, for requests of these past lengths, added up as ``formulas.ragged``
    adds them (constant steps once, affine ones m0 + Σ (each request's − m0), derived
    ones from the batch's values), and ``alone(given, length)``: one request alone
    (B = 1), its KV-cache bytes per chip and its attention core (``scores`` +
    ``apply_v``), as ``formulas.kv_tier`` charges it.

    Raises Unsupported where the engine adds a total up otherwise than request by
    request (rank classes; "busiest × chips"), or the exact printer cannot print a
    step: then no program is kept, and the engine answers."""
    if result.inputs.ragged is None:
        raise Unsupported("not a ragged batch")
    program = _Ragged(result)
    body = [
        *program.inputs(),
        *program.hardware(),
        *program.step_function(),
        *program.checked(),
        *program.batch(),
        *program.metrics(),
        *program.notes(),
        *program.timing(),
    ]
    lines = [
        f"# Generated by shardcost {FORMAT}: {result.inputs.layout.layer} layout, "
        "decode, ragged batches.",
        "# Exact: ints and Fractions; a failed check or an uncertain number returns None.",
        *_IMPORTS,
        "from shardcost.reports.text import ragged_split_notes as _ragged_notes",
        "",
        *program.constants(),
        *program.ragged_constants(),
        "",
        "",
        "def _prepare(given, lengths):",
        *program.prepare(),
        "",
        "",
        "def run(given, lengths):",
        "    given, _order, _count = _prepare(given, lengths)",
        "    if given is None:",
        "        return None",
        "    n = len(lengths)",
        *body,
        *program.tail(),
        "",
        "",
        "def alone(given, length):",
        "    given, _order, _count = _prepare(given, (length,))",
        "    if given is None:",
        "        return None",
        *program.inputs(),
        *program.hardware(),
        *program.step_function(),
        *program.checked(),
        *program.alone(),
        "",
    ]
    source = "\n".join(lines)
    compile(source, "<shardcost ragged program>", "exec")  # a syntax error is ours: fail here
    return source


class _Ragged(_Program):
    """A ``_Program`` whose steps are one function of the batch size and the past length,
    run once at B = 0, once at B = 1 per distinct length, then over the batch's sums."""

    def __init__(self, result: Result) -> None:
        from shardcost.formulas import ragged
        from shardcost.formulas.evaluate import _TOTAL_SYMBOLS, _with_totals

        super().__init__(result)
        cost = self.cost
        self.full = _with_totals(result.derivation, cost)
        self.kinds = ragged.step_kinds(self.full)
        self.needed = ragged._needed(self.full)
        present = {s.symbol for s in self.full.steps}
        self.totals = []
        for name in cost.totals:
            symbol = _TOTAL_SYMBOLS[name]
            if symbol not in present:
                raise Unsupported(f"{name} over all chips is not a sum over requests")
            self.totals.append(symbol)
        self.step_names = {step.symbol: f"s{i}" for i, step in enumerate(self.full.steps)}
        self.names.update(self.step_names)
        batch = BY_NAME["batch_size"].symbol
        past = BY_NAME["past_seq_len"].symbol
        if batch not in self.names or past not in self.names:
            raise Unsupported("a layer that reads no batch or no past length")
        self.batch_symbol, self.past_symbol = batch, past

    def prepare(self) -> list[str]:
        """The batch's size from its lengths (one given must agree), and its distinct
        lengths in the order of their first requests with how many have each."""
        return [
            "    n = len(lengths)",
            "    given = dict(given)",
            "    if n < 1 or given.setdefault('batch_size', n) != n:",
            "        return None, None, None",
            "    given['past_seq_len'] = lengths[0]",
            "    _count = {}",
            "    for _length in lengths:",
            "        if type(_length) is not int or _length < 1:",
            "            return None, None, None",
            "        _count[_length] = _count.get(_length, 0) + 1",
            "    return given, list(_count), _count",
        ]

    def ragged_constants(self) -> list[str]:
        kinds = tuple(str(self.kinds[s.symbol]) for s in self.full.steps)
        splits = tuple(
            (describe(s.total, self.base), describe(s.parts, self.base), s.what, s.replicates)
            for s in self.base.splits
        )
        return [f"KINDS = {kinds!r}", f"SPLITS = {splits!r}"]

    def step_function(self) -> list[str]:
        """Every step as one function of (B, S_past) and the steps already known."""
        lines = ["    def _steps(d_batch_size, d_past_seq_len, fixed):"]
        for i, step in enumerate(self.full.steps):
            lines.append(f"        s{i} = fixed[{i}] if {i} in fixed else {self.print(step.expr)}")
        names = ", ".join(f"s{i}" for i in range(len(self.full.steps)))
        lines += [f"        return ({names},)", ""]
        return lines

    def batch(self) -> list[str]:
        """The requirements at every distinct length; the batch's value of each step."""
        names = ", ".join(f"s{i}" for i in range(len(self.full.steps)))
        return [
            "    for _length in _order:",
            "        if not _checked(n, _length):",
            "            return None",
            "    try:",
            "        _zero = _steps(0, _order[0], {})",
            "        _one = {L: _steps(1, L, {}) for L in _order}",
            "        _fixed = {}",
            "        for _i, _kind in enumerate(KINDS):",
            "            if _kind == 'constant':",
            "                _fixed[_i] = _one[_order[0]][_i]",
            "            elif _kind == 'affine':",
            "                _z = _zero[_i]",
            "                _fixed[_i] = _z + sum(_count[L] * (_one[L][_i] - _z) for L in _order)",
            "            elif _kind == 'per request':",
            "                _fixed[_i] = None",
            "        _b = _steps(n, None, _fixed)  # derived steps from the batch's values",
            "    except (TypeError, ZeroDivisionError):  # no single value: the engine says why",
            "        return None",
            f"    ({names},) = _b",
            "    d_batch_size, d_past_seq_len = n, tuple(lengths)",
        ]

    def checked(self) -> list[str]:
        """The layer's requirements as a function of (B, S_past): True where they hold."""
        lines = [line.replace("return None", "return False") for line in self.requirements()]
        return [
            "    def _checked(d_batch_size, d_past_seq_len):",
            *("    " + line for line in lines),
            "        return True",
            "",
        ]

    def metrics(self) -> list[str]:
        """As ``_Program.metrics``, each total the batch's sum of the requests' totals."""
        lines = super().metrics()
        p = self.print
        totals = "    tot = tuple(map(_whole, (" + ", ".join(p(s) for s in self.totals) + ",)))"
        out = [totals if line.startswith("    tot = ") else line for line in lines]
        at = out.index("    for v in (_chips, *per, *tot, comm, *coll):")
        return [
            *out[:at],
            "    if any(t > b * _chips for t, b in zip(tot, per)):",
            "        return None",
            *out[at:],
        ]

    def _request_printer(self, batch: str, past: str, step: Callable[[int], str]) -> _Exact:
        names = dict(self.names)
        names[self.batch_symbol], names[self.past_symbol] = batch, past
        for i, s in enumerate(self.full.steps):
            names[s.symbol] = step(i)
        return _Exact(names)

    def notes(self) -> list[str]:
        """The uneven splits over the distinct lengths, each side as a request alone has
        it (B = 1, its own length; the steps ``ragged._needed`` keeps per request, the
        batch's value of the rest), summarised as the engine summarises them; then the
        lone steps at the first request's values under the batch's."""

        def per(i: int) -> str:
            return f"_r[{i}]" if self.full.steps[i].symbol in self.needed else f"_b[{i}]"

        side = self._request_printer("(1)", "_L", per)
        lines = ["    _found = []"]
        for k, split in enumerate(self.base.splits):
            lines += [
                "    _seen = []",
                "    for _L in _order:",
                "        _r = _one[_L]",
                f"        _t, _p = {side(split.total)}, {side(split.parts)}",
                "        if type(_t) is not int or type(_p) is not int or _t < 1 or _p < 1:",
                "            return None",
                "        _seen.append((_L, _t, _p))",
                "    if len({(_t, _p) for _, _t, _p in _seen}) == 1:",
                "        _seen = [(None, _seen[0][1], _seen[0][2])]",
                "    for _place, (_L, _t, _p) in enumerate(_seen):",
                f"        if ({split.replicates!r} and _t < _p) or _t % _p:",
                "            _found.append((0, "
                f"{k}, _t, _p, n) if _L is None else (_place, {k}, _t, _p, _count[_L]))",
            ]
        lines.append("    notes = _ragged_notes(_found, SPLITS, n)")
        first = self._request_printer(
            "n", "_order[0]", lambda i: f"(_b[{i}] if _b[{i}] is not None else _r0[{i}])"
        )
        if self.base.lone:
            lines.append("    _r0 = _one[_order[0]]")
        for lone in self.base.lone:
            lines += [
                f"    _p = {first(lone.parts)}",
                "    if type(_p) is not int or _p < 1:",
                "        return None",
                f"    _n = _lone({lone.what!r}, {describe(lone.parts, self.base)!r}, _p)",
                "    if _n is not None:",
                "        notes.append(_n)",
            ]
        return lines

    def timing(self) -> list[str]:
        model = self.result.model
        if self.result.timing is None or model is None:
            return ["    timing = None", "    intensity = None"]
        times = ", ".join(self.print(s) for s in model.times.values())
        return [
            f"    times = tuple(float(_F(t)) for t in ({times},))",
            "    intensity = None",
            f"    timing = dict(zip({tuple(model.times)!r}, times))",
        ]

    def tail(self) -> list[str]:
        """``_TAIL``, the batch's lengths in its parameters."""
        return [
            "    d = dict(d, past_seq_len=list(lengths), batch_size=n)",
            *_TAIL,
        ]

    def alone(self) -> list[str]:
        """One request alone: its requirements, KV-cache bytes and attention core."""
        keys = {s.key: self.step_names[s.symbol] for s in self.full.steps}
        core = [keys[k] for k in ("scores", "apply_v") if k in keys]
        p = self.print
        return [
            "    if not _checked(1, length):",
            "        return None",
            "    try:",
            f"        ({', '.join(f's{i}' for i in range(len(self.full.steps)))},) = "
            "_steps(1, length, {})",
            "    except (TypeError, ZeroDivisionError):",
            "        return None",
            f"    kv = _whole({p(self.cost.kv_cache_bytes)})",
            f"    core = {' + '.join(core) if core else '0'}",
            "    if type(kv) is not int or kv < 0:",
            "        return None",
            "    return kv, core",
        ]
