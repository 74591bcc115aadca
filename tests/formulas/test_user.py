"""User layouts from TOML files and from Python: checked, registered, verified, evaluated."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import sympy

import shardcost
from shardcost.errors import InputError
from shardcost.formulas import Phase, get_layout
from shardcost.formulas.user import load_layout, read_layout
from shardcost.symbolic import CollectiveKind
from tests import helpers
from tests.helpers import CHIPS, GROUP, OUTPUT, PAYLOAD, with_chips, with_group, with_output

LAYOUTS = Path(__file__).parent / "layouts"
_names = (f"user-{i}" for i in itertools.count())


def layout_file(tmp_path: Path, text: str) -> Path:
    """A layout file with a fresh name (the registry refuses a name twice)."""
    path = tmp_path / "layout.toml"
    path.write_text(text.replace("NAME", next(_names)))
    return path


def quantities(
    flops: str = "1", weights: str = "1", activations: str = "1", kv_cache: str = "1"
) -> dict[str, str]:
    """define_layout's per_chip: the four per-chip quantities, each 1 unless given."""
    names = ("flops", "weight_bytes", "activation_bytes", "kv_cache_bytes")
    return dict(zip(names, (flops, weights, activations, kv_cache), strict=True))


GOOD = """
[layout]
name = "NAME"
phase = "prefill"
chips = "cp"
[per_chip]
flops = "(8*B*S*d**2 + 4*B*h*S**2*dh) / cp"
weight_bytes = "4*d**2*b"
activation_bytes = "5*B*S*d*b/cp"
kv_cache_bytes = "2*B*S*d*b/cp"
[comm]
softmax_stats_allreduce = "B*S/cp*h*2*b_s"
[checks]
weight_replication = "cp"
"""


def test_the_issue_example_verifies_and_evaluates() -> None:
    layout = load_layout(LAYOUTS / "my-ring-cp.toml")
    (result,) = shardcost.verify(layout.name)
    assert result.ok
    assert [s.name for s in result.statements] == ["weight copies"]  # undeclared: stated
    # As a layout it evaluates like the built-ins: CP-1's numbers (seed 001).
    m = shardcost.metrics(
        layout.name,
        hidden_size=1024,
        num_heads=16,
        head_dim=64,
        batch_size=2,
        seq_len=128,
        context_parallel=4,
    )["metrics"]
    assert m["flops_per_chip"] == 570_425_344
    assert m["communication_bytes"] == 139_264  # 8,192 + 131,072


def test_declared_checks_are_held(tmp_path: Path) -> None:
    layout = load_layout(layout_file(tmp_path, GOOD))
    (result,) = shardcost.verify(layout.name)
    assert result.ok and not result.statements
    names = {v.claim.name for v in result.verdicts}
    assert "weights as declared" in names


def test_a_wrong_declaration_fails(tmp_path: Path) -> None:
    layout = load_layout(
        layout_file(tmp_path, GOOD.replace('weight_replication = "cp"', 'weight_replication = "1"'))
    )
    (result,) = shardcost.verify(layout.name)
    failed = {v.claim.name: v for v in result.verdicts if not v.ok}
    # 4*d^2*b on each of cp chips against single's 4*d^2*b: residual 4*b*dh^2*h^2*(cp - 1)
    assert str(failed["weights as declared"].residual) == "4*b*dh**2*h**2*(cp - 1)"


def test_python_route() -> None:
    layout = shardcost.define_layout(
        next(_names),
        phase="decode",
        chips="tensor_parallel",
        per_chip=quantities(
            "(8*B*T*d**2 + 4*B*h*T*(S_past + T)*dh) / tp",
            "4*d**2*b/tp",
            "(2*B*T*d + 3*B*T*d/tp)*b",
            "2*B*S_past*d*b/tp",
        ),
        comm={"output_allreduce": "B*T*d*b"},
    )
    (result,) = shardcost.verify(layout.name)
    assert result.ok, [(v.claim.name, v.residual) for v in result.verdicts if not v.ok]


def test_a_user_layout_adds_up_to_the_same_totals_as_the_built_ins() -> None:
    cost = read_layout(LAYOUTS / "my-ring-cp.toml").cost(Phase.PREFILL)
    built_in = get_layout("single").cost(Phase.PREFILL)
    for key in ("flops", "weight_bytes", "activation_bytes", "kv_cache_bytes"):
        mine, theirs = cost.derivation.step(key), built_in.derivation.step(key)
        words = ("symbol", "label", "section", "unit", "latex")
        assert [getattr(mine, w) for w in words] == [getattr(theirs, w) for w in words]
    # the file names its collectives; it declares no kind for them
    assert [(c.name, c.kind) for c in cost.collectives] == [
        ("softmax_stats_allreduce", CollectiveKind.USER),
        ("output_allreduce", CollectiveKind.USER),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[layout\nname=", "malformed TOML"),
        (GOOD.replace("[checks]", "[extras]"), "unknown table [extras]"),
        (GOOD.replace('chips = "cp"', 'chips = "cp"\ncolor = "red"'), "unknown key [layout] color"),
        (
            GOOD.replace('flops = "(8*B*S*d**2 + 4*B*h*S**2*dh) / cp"', ""),
            "[per_chip] needs exactly flops",
        ),
        (GOOD.replace('chips = "cp"', ""), "[layout] needs chips"),
        (
            GOOD.replace('"4*d**2*b"', '"4*d**2*bytes"'),
            "[per_chip] weight_bytes, column 8: unknown name 'bytes'",
        ),
        (GOOD.replace('"4*d**2*b"', "4.5"), "expected formula text, got float"),
        (GOOD.replace('phase = "prefill"', 'phase = "training"'), "phase='training' is unknown"),
        (
            GOOD.replace('chips = "cp"', 'chips = "cp"\nreference = "nope"'),
            "layout 'nope' is unknown",
        ),
        ("a = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
        ("x = '" + "y" * 70_000 + "'", "a layout file is at most 65,536"),
        (GOOD.replace('"4*d**2*b"', '"os.system(1)"'), "column 3: unexpected character '.'"),
    ],
)
def test_bad_files_name_file_key_and_column(tmp_path: Path, text: str, message: str) -> None:
    path = layout_file(tmp_path, text)
    with pytest.raises(InputError) as exc:
        load_layout(path)
    assert str(path) in str(exc.value)
    assert message in str(exc.value)


def test_names_are_not_taken_twice(tmp_path: Path) -> None:
    path = layout_file(tmp_path, GOOD)
    load_layout(path)
    with pytest.raises(InputError, match="is already registered"):
        load_layout(path)
    with pytest.raises(InputError, match="'tp' is already registered"):
        load_layout(layout_file(tmp_path, GOOD.replace('name = "NAME"', 'name = "tp"')))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_layout(tmp_path / "absent.toml")


def named(text: str) -> str:
    """The issue's layout named NAME, so that layout_file gives it a fresh name."""
    return text.replace('"my-ring-cp"', '"NAME"')


ISSUE = named(helpers.ISSUE)
# The issue's example (my-ring-cp) with one value changed at a time: layouts that cannot be.
IMPOSSIBLE = [
    # constants: no point is needed, the value itself is not a whole number >= 1
    (with_group("0"), f"[groups] output_allreduce = 0: {GROUP}; 0 is not"),
    (with_group("-1"), f"[groups] output_allreduce = -1: {GROUP}; -1 is not"),
    (with_group("1/2"), f"[groups] output_allreduce = 1/2: {GROUP}; 1/2 is not"),
    (with_chips('"0"'), f"[layout] chips = 0: {CHIPS}; 0 is not"),
    (with_chips('"-1"'), f"[layout] chips = -1: {CHIPS}; -1 is not"),
    (with_chips("-3"), f"[layout] chips = -3: {CHIPS}; -3 is not"),
    # -S is sent only on a group of more than one: smallest failure seq_len=1, cp=2: -1
    (
        with_output("-S"),
        f"[comm] output_allreduce = -S: {PAYLOAD}; at seq_len=1 context_parallel=2 it is -1",
    ),
    # the same with chips (so the group) tensor_parallel: seq_len=1, tp=2: -1
    (
        with_output("-S").replace('chips = "context_parallel"', 'chips = "tensor_parallel"'),
        f"[comm] output_allreduce = -S: {PAYLOAD}; at seq_len=1 tensor_parallel=2 it is -1",
    ),
    # negative only for some inputs: S - 2*B at B=1, S=1 (cp=2) is 1 - 2 = -1
    (
        with_output("S - 2*B"),
        f"[comm] output_allreduce = S - 2*B: {PAYLOAD}; "
        "at batch_size=1 seq_len=1 context_parallel=2 it is -1",
    ),
    # a group that is not whole at some point: S/2 at seq_len=1 is 1/2
    (with_group("S/2"), f"[groups] output_allreduce = S/2: {GROUP}; at seq_len=1 it is 1/2"),
    # cp*tp - 1 at tp = cp = 1 is 0
    (
        with_chips('"cp*tp - 1"'),
        f"[layout] chips = cp*tp - 1: {CHIPS}; at tensor_parallel=1 context_parallel=1 it is 0",
    ),
    # a per-chip quantity: 4*d^2*b - 5 at d = h*dh = 1, b = 1 is 4 - 5 = -1
    (
        ISSUE.replace('"4*hidden_size**2*bytes_per_elem"', '"4*hidden_size**2*bytes_per_elem - 5"'),
        "[per_chip] weight_bytes = 4*hidden_size**2*bytes_per_elem - 5: a per-chip quantity is "
        "zero or more; at hidden_size=1 num_heads=1 head_dim=1 bytes_per_elem=1 it is -1",
    ),
]
IMPOSSIBLE = [(named(text), message) for text, message in IMPOSSIBLE]  # each a fresh name


@pytest.mark.parametrize(("text", "message"), IMPOSSIBLE)
def test_a_layout_that_cannot_be_is_refused_at_load(
    tmp_path: Path, text: str, message: str
) -> None:
    path = layout_file(tmp_path, text)
    before = {lay.name for lay in shardcost.layouts()}
    with pytest.raises(InputError) as exc:
        load_layout(path)
    assert str(exc.value) == f"{path}: {message}"  # one line naming table, key and value
    assert "\n" not in str(exc.value)
    assert {lay.name for lay in shardcost.layouts()} == before  # nothing registered
    name = next(line for line in text.splitlines() if line.startswith("name = "))[8:-1]
    with pytest.raises(InputError, match="is unknown"):
        shardcost.metrics(name, context_parallel=2)


def test_the_python_route_refuses_the_same() -> None:
    per_chip = quantities(
        "(8*B*S*d**2 + 4*B*h*S**2*dh) / cp", "4*d**2*b", "5*B*S*d*b/cp", "2*B*S*d*b/cp"
    )

    def refused(name: str, match: str, **kwargs: Any) -> None:
        with pytest.raises(InputError, match=match):
            shardcost.define_layout(
                name, **{"phase": "prefill", "chips": "cp", "per_chip": per_chip, **kwargs}
            )

    refused(
        "py-half",
        rf"^\[groups\] output_allreduce = 1/2: {GROUP}; 1/2 is not$",
        comm={"output_allreduce": "B*S/cp*d*b"},
        groups={"output_allreduce": sympy.Rational(1, 2)},
    )
    refused("py-zero", rf"^\[layout\] chips = 0: {CHIPS}; 0 is not$", chips=0)
    # two collectives cannot cancel: S + (-S) sends nothing in all, but -S is not a payload
    refused(
        "py-cancel",
        r"\[comm\] back = -S: .* at seq_len=1 context_parallel=2 it is -1$",
        comm={"there": "S", "back": "-S"},
    )
    assert not [lay for lay in shardcost.layouts() if lay.name.startswith("py-")]


def test_a_whole_number_that_needs_the_points_is_accepted() -> None:
    # ceil(S/cp) >= 1 and cp + tp - 1 >= 1 hold everywhere; a payload of (S - 2*B)**2 is a
    # square; none of them is refused
    layout = shardcost.define_layout(
        next(_names),
        phase="prefill",
        chips="cp + tp - 1",
        per_chip=quantities("B*S*d", "d*d*b", "B*S*d*b", "B*S*d*b"),
        comm={"x": "(S - 2*B)**2"},
        groups={"x": "ceil(S/cp)"},
    )
    assert layout in shardcost.layouts()


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        ("x" * 201, "summary is 201 characters; at most 200"),
        ("two\nlines", "character 4 is U+000A, a control character"),
        ("a\rb", "character 2 is U+000D, a control character"),
        ("a\tb", "character 2 is U+0009, a control character"),
        ("nul\x00", "character 4 is U+0000, a control character"),
        ("a\u2028b", "character 2 is U+2028, a line separator"),
        ("a\u2029b", "character 2 is U+2029, a paragraph separator"),
        ("a\u202eb", "character 2 is U+202E, a format character"),  # right-to-left override
        ("a\ud800b", "character 2 is U+D800, a surrogate"),
        ("a\ue000b", "character 2 is U+E000, a private-use character"),
        ("a\u0378b", "character 2 is U+0378, an unassigned code point"),
        (3, "summary must be text, got int"),
    ],
)
def test_a_summary_is_one_line_of_printable_text(summary: str, message: str) -> None:
    with pytest.raises(InputError) as exc:
        shardcost.define_layout(
            next(_names),
            phase="prefill",
            chips="cp",
            per_chip=quantities(),
            summary=summary,
        )
    assert message in str(exc.value)
    assert str(exc.value).isprintable()  # one line: the summary is never echoed raw


def test_a_summary_of_200_printable_characters_is_kept() -> None:
    text = "é" * 199 + "."
    layout = shardcost.define_layout(
        next(_names),
        phase="prefill",
        chips="cp",
        per_chip=quantities(),
        summary=text,
    )
    assert layout.summary == text


def test_the_default_summary_escapes_what_the_path_smuggles(tmp_path: Path) -> None:
    where = "evil\n\r\t\x00\u2028\u2029\u202e.toml"
    per_chip = quantities()
    layout = shardcost.define_layout(
        next(_names), phase="prefill", chips="cp", per_chip=per_chip, where=where
    )
    assert layout.summary == r"user layout (evil\n\r\t\x00\u2028\u2029\u202e.toml)"
    long = shardcost.define_layout(
        next(_names), phase="prefill", chips="cp", per_chip=per_chip, where="/d" * 300 + "/f.toml"
    )
    assert len(long.summary) == 200 and long.summary.endswith("/d/f.toml)")
    with pytest.raises(InputError) as exc:
        shardcost.define_layout(
            next(_names), phase="prefill", chips="0", per_chip=per_chip, where=where
        )
    assert str(exc.value).startswith(r"evil\n\r\t\x00\u2028\u2029\u202e.toml: [layout] chips = 0")
    assert str(exc.value).isprintable()
    # a file whose name carries a newline says so on one line
    path = tmp_path / "a\nb.toml"
    path.write_text(
        ISSUE.replace("NAME", next(_names)).replace('chips = "context_parallel"', 'chips = "0"')
    )
    with pytest.raises(InputError) as exc:
        load_layout(path)
    assert str(exc.value).isprintable() and "a\\nb.toml: [layout] chips = 0" in str(exc.value)


def test_read_layout_builds_without_refusing_or_registering(tmp_path: Path) -> None:
    path = layout_file(tmp_path, named(with_group("0")))
    before = shardcost.layouts()
    layout = read_layout(path)
    assert layout.name.startswith("user-") and shardcost.layouts() == before
    with pytest.raises(InputError, match="column 1: unexpected character"):
        read_layout(layout_file(tmp_path, ISSUE.replace(OUTPUT, 'output_allreduce = "$"')))


def test_a_payload_below_zero_past_the_points_checked_is_an_error(tmp_path: Path) -> None:
    # 100000 - S is checked at points (none past S = 65536) and loads; at S = 200,000 it
    # is 100,000 - 200,000 = -100,000 bytes: metrics refuses rather than subtract them.
    text = ISSUE.replace("NAME", "far-negative").replace(OUTPUT, 'output_allreduce = "100000 - S"')
    load_layout(layout_file(tmp_path, text))
    ok = shardcost.metrics("far-negative", context_parallel=2, seq_len=1024)
    # softmax stats B·S/cp·h·2·b_s = 1·512·32·2·4 = 131,072; output 100,000 - 1024 = 98,976
    assert ok["metrics"]["communication_bytes"] == 131_072 + 98_976
    with pytest.raises(InputError, match="is -100000 here, below zero"):
        shardcost.metrics("far-negative", context_parallel=2, seq_len=200_000)
