"""Hostile text in a layout (summary, step labels, check messages, names) never becomes
code in an export: every language writes it as an escaped literal or a one-line comment.

Each hostile layout carries payloads that, pasted into source unescaped, run code in the
language they are written for (``touch pwned-...`` in the working directory; Go, whose
generated files import neither os nor os/exec, panics). The exports are built and run as
in tests/codegen/test_export.py (tests/toolchains.sh installs the toolchains: a missing
one fails, never skips); no marker may appear, and run.sh must print the metrics of
``shardcost.metrics``, or a failed check's message exactly as the layout words it.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import shardcost
from shardcost.codegen import literals
from shardcost.codegen.export import LANGUAGES, export
from shardcost.formulas import Conventions, Layout, Phase, get_layout, registry
from shardcost.formulas.user import define_layout
from shardcost.symbolic import Cost
from shardcost.symbolic.dimensions import CONTEXT_PARALLEL, SEQ_LEN
from shardcost.symbolic.trace import Requirement, Step
from tests.helpers import TOOLS, run_sh

PARAMS = {  # seed 001's CP-1, as the README's my-ring-cp example
    "hidden_size": 1024,
    "num_heads": 16,
    "head_dim": 64,
    "batch_size": 2,
    "seq_len": 128,
    "context_parallel": 4,
}
C_TOUCH = 'extern int system(const char *); system("touch pwned-c-{}");'
RUST_TOUCH = 'std::process::Command::new("touch").arg("pwned-rust-{}").status().ok();'
JS_TOUCH = 'import("node:child_process").then((m) => m.execSync("touch pwned-js-{}"));'
RUST_INIT = (  # life before main: an .init_array entry
    '#[used] #[link_section = ".init_array"] static PWN: extern "C" fn() = '
    '{ extern "C" fn pwn() { ' + RUST_TOUCH.format("init") + " } pwn };"
)


@dataclasses.dataclass(frozen=True)
class Payload:
    """The texts of one hostile layout."""

    summary: str  # in the comment above each function (Python: its docstring)
    labels: dict[str, str]  # step key -> label: the comment after the step's line (and,
    # for a step with a division, part of a check's text)
    total: str  # a check's texts, printed inside string literals; kept short, as C's
    parts: str  # message buffer is 256 bytes
    why: str

    @property
    def message(self) -> str:
        """What run.sh prints when the check fails (seq_len=130, context_parallel=4)."""
        return f"error: {self.total} (H)=130 is not divisible by {self.parts} (G)=4: {self.why}\n"


PAYLOADS = {
    "python": Payload(
        'x."""; __import__("os").system("touch pwned-python-summary"); """x',
        {"weight_bytes": 'weights\n    __import__("os").system("touch pwned-python-step")'},
        "S {__import__('os').system('touch pwned-python-fstring')}",
        "G",
        'x", __import__("os").system("touch pwned-python-why")) #',
    ),
    "c": Payload(
        "x\n__attribute__((constructor)) static void pwn(void) { "
        + C_TOUCH.format("init")
        + " }\n//",
        {"weight_bytes": "weights\n    " + C_TOUCH.format("step")},
        "S",
        "G",
        'x"); ({ ' + C_TOUCH.format("why") + ' }); (void)("',
    ),
    "rust": Payload(
        f"x\n{RUST_INIT}\n///",
        {"weight_bytes": "weights\n    " + RUST_TOUCH.format("step")},
        "S",
        "G",
        'x")); } { ' + RUST_TOUCH.format("why") + ' } if false { let _ = (("',
    ),
    "js": Payload(
        '*/ (await import("node:child_process")).execSync("touch pwned-js-summary"); /*',
        {"weight_bytes": "weights\u2028  " + JS_TOUCH.format("step")},
        "S",
        "G",
        'x"); ' + JS_TOUCH.format("why") + ' ("',
    ),
    "go": Payload(
        'x\nfunc init() { panic("pwned-go-init") }\n//',
        {"weight_bytes": 'weights\n\tpanic("pwned-go-step")'},
        "S",
        "G",
        'x") }; if true { panic("pwned-go-why") }; if false { return nil, fmt.Errorf("',
    ),
    "misc": Payload(  # every other way out: separators, splices, trigraphs, quotes
        'NUL \0 bell \a ??/ tab\t"#` ${process.exit(3)} {} %s %n \\" é×→ᵀ 𝔸 \u2028 \u202e\\',
        {
            "flops": "FLOPs \\",
            "weight_bytes": "weights ??/",
            "activation_bytes": "activations\r  x",
            "kv_cache_bytes": "KV\x85 x\v\f\u2029 */ \"\"\" '''",
            "output_allreduce": "output\\ ",
            "communication_bytes": "comm */ \"'\\",
        },
        "S\"#`${process.exit(3)}`'''",
        "G\\u{41}\\x41%n\\0",
        "\\'\"\u2028\t?\\?/ ×→ {} %s\\",
    ),
}


def _benign() -> Layout:
    """The README's my-ring-cp, built by define_layout and left out of the registry."""
    saved = dict(registry._REGISTRY)
    try:
        return define_layout(
            "hostile-base",
            phase="prefill",
            chips="context_parallel",
            per_chip={
                "flops": "(8*batch_size*seq_len*hidden_size**2"
                " + 4*batch_size*num_heads*seq_len**2*head_dim) / context_parallel",
                "weight_bytes": "4*hidden_size**2*bytes_per_elem",
                "activation_bytes": "5*batch_size*seq_len*hidden_size*bytes_per_elem"
                " / context_parallel",
                "kv_cache_bytes": "2*batch_size*seq_len*hidden_size*bytes_per_elem"
                " / context_parallel",
            },
            comm={
                "softmax_stats_allreduce": "batch_size*seq_len/context_parallel*num_heads"
                "*2*softmax_stat_bytes",
                "output_allreduce": "batch_size*seq_len/context_parallel*hidden_size"
                "*bytes_per_elem",
            },
            weight_replication="context_parallel",
            summary="benign",
        )
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)


BASE = _benign()


def _hostile(payload: Payload) -> Callable[[Phase, Conventions], Cost]:
    """A builder: the base cost with ``payload``'s labels and one more requirement
    (``G`` must divide ``H``: context_parallel must divide seq_len) in its words."""

    def build(phase: Phase, conventions: Conventions) -> Cost:
        cost = BASE.build(phase, conventions)
        d = cost.derivation
        group = sympy.Symbol("G", nonnegative=True)
        length = sympy.Symbol("H", nonnegative=True)
        named = (
            Step(length, "length", "derived", payload.total, SEQ_LEN.symbol, "H", "tokens"),
            Step(group, "group", "derived", payload.parts, CONTEXT_PARALLEL.symbol, "G", "chips"),
        )
        labels = payload.labels
        steps = tuple(dataclasses.replace(s, label=labels.get(s.key, s.label)) for s in d.steps)
        require = Requirement(length, group, payload.why)
        derivation = dataclasses.replace(
            d, steps=(*named, *steps), requirements=(require, *d.requirements)
        )
        return dataclasses.replace(cost, derivation=derivation)

    return build


def hostile_layouts() -> list[tuple[Layout, Payload]]:
    """One layout per payload, and one whose name and layer are hostile too."""
    made = [
        (dataclasses.replace(BASE, name=f"hostile-{k}", summary=p.summary, build=_hostile(p)), p)
        for k, p in PAYLOADS.items()
    ]
    named = dataclasses.replace(
        made[-1][0],
        name='n"); system("touch pwned-c-name"); //\n"""*/ é `${x}` \\',
        layer='att"en\u2028tion\\',
    )
    return [*made, (named, made[-1][1])]


def key(layout: Layout) -> str:
    """run.sh's LAYOUT argument for ``layout``."""
    return layout.name if layout.layer == "attention" else f"{layout.layer}/{layout.name}"


@pytest.fixture
def registered() -> Iterator[list[tuple[Layout, Payload]]]:
    """The hostile layouts, registered (tests/conftest.py restores the registry after)."""
    made = hostile_layouts()
    for layout, _ in made:
        registry.register(layout)
    yield made


@pytest.mark.parametrize("language", LANGUAGES)
def test_hostile_text_stays_text(
    registered: list[tuple[Layout, Payload]], tmp_path: Path, language: str
) -> None:
    out, work = tmp_path / "out", tmp_path / "cwd"
    work.mkdir()
    export(language, out, layouts=[*(lay for lay, _ in registered), get_layout("single")])
    plain = {k: v for k, v in PARAMS.items() if k != "context_parallel"}  # one chip
    proc = run_sh(
        out, language, "single", "prefill", *(f"{k}={v}" for k, v in plain.items()), cwd=work
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == shardcost.metrics("single", **plain)["metrics"]
    args = [f"{k}={v}" for k, v in PARAMS.items()]
    uneven = [a if not a.startswith("seq_len=") else "seq_len=130" for a in args]
    for layout, payload in registered:
        want = shardcost.metrics(layout.name, layer=layout.layer, **PARAMS)["metrics"]
        assert want["flops_per_chip"] == 570_425_344  # the README's CP-1 figure
        proc = run_sh(out, language, key(layout), "prefill", *args, cwd=work)
        assert proc.returncode == 0, (layout.name, proc.stderr)
        assert json.loads(proc.stdout) == want, layout.name
        assert list(json.loads(proc.stdout)) == list(shardcost.symbolic.METRICS)
        proc = run_sh(out, language, key(layout), "prefill", *uneven, cwd=work)
        assert proc.returncode == 2, (layout.name, proc.stdout, proc.stderr)
        assert proc.stderr == payload.message, layout.name
    assert not [p.name for p in tmp_path.rglob("pwned*")]
    source = "\n".join(
        p.read_text(encoding="utf-8")
        for p in (out / language).rglob("*")
        if p.is_file() and p.name != "run.sh" and "build" not in p.parts
    )
    # readable: the built-in labels and ordinary summary text stay as they are
    assert "attention scores Q·Kᵀ" in source and "é×→ᵀ 𝔸" in source
    assert "\0" not in source and "\u2028" not in source and "\r" not in source


# -- literals, one by one --------------------------------------------------------------

NASTY = [
    "",
    '"""',
    "'''",
    '\\"',
    "\\",
    "a\\",
    "a\\ ",
    "??/",
    "a??/",
    "*/",
    "/*",
    "**/",
    "/",
    "*",
    "`${x}`",
    '"#',
    "#[",
    "%s%n%%",
    "{}{0}",
    "\0",
    "\0" + "7",
    "\x7f\x80\x9f",
    "\x85",
    "\u2028\u2029",
    "\ufeff\u202e\u200b",
    "\r\n\v\f\t",
    "é×→ᵀ·",
    "𝔸\U0010ffff",
    "\ud800",
    "\udfff",
    "a\ud83dz",
]
ALPHABET = [chr(i) for i in range(128)] + [*"\x85\xa0é×\u2028\u2029\ufeff\u202e𝔸\U0010ffff"]
ALPHABET += ["\ud800", "\udc00"]


def corpus() -> list[str]:
    rng = random.Random(2028)
    made = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 24))) for _ in range(150)]
    return [*NASTY, *made]


def _decode_c(literal: str) -> bytes:
    assert literal[0] == literal[-1] == '"' and literal.isascii()
    body, out, i = literal[1:-1], bytearray(), 0
    while i < len(body):
        if body[i] != "\\":
            out.append(ord(body[i]))
            i += 1
        elif body[i + 1] in "01234567":
            assert re.fullmatch(r"[0-7]{3}", body[i + 1 : i + 4])
            out.append(int(body[i + 1 : i + 4], 8))
            i += 4
        else:
            assert body[i + 1] in '\\"?'
            out.append(ord(body[i + 1]))
            i += 2
    return bytes(out)


def _decode_rust(literal: str) -> str:
    assert literal[0] == literal[-1] == '"' and literal.isascii()
    body = literal[1:-1]
    assert not re.search(r'(?<!\\)(\\\\)*"', body)  # every quote escaped
    return re.sub(
        r"\\(u\{([0-9a-f]{1,6})\}|.)",
        lambda m: chr(int(m[2], 16)) if m[2] else m[1],
        body,
    )


def _wtf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _scalar(text: str) -> str:
    return re.sub("[\ud800-\udfff]", "\ufffd", text)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_string_literals_denote_exactly_the_text(text: str) -> None:
    for language in LANGUAGES:
        assert literals.string(language, text).isascii()
    assert ast.literal_eval(literals.python_string(text)) == text
    assert json.loads(literals.js_string(text)) == text  # JSON: a subset of JavaScript
    assert _decode_c(literals.c_string(text)) == _wtf8(text)
    assert _decode_rust(literals.rust_string(text)) == _scalar(text)
    if not re.search("[\ud800-\udfff]", text):  # Go's escapes are Python's, same meaning
        assert ast.literal_eval(literals.go_string(text)) == text


def _comment_is_safe(language: str, text: str) -> None:
    made = literals.comment(language, text)
    assert made.isprintable(), made  # one line: no control, separator or surrogate
    if language != "python":  # a line comment ending in a backslash may splice the next
        assert not made.rstrip().endswith("\\")
        # and no block comment ends (in Rust, whose block comments nest, nor begins), even
        # where a template writes "*" before the text or "/" after it
        assert "*/" not in made and not made.startswith("/") and not made.endswith("*")
    if language == "c":
        assert not made.rstrip().endswith("??/")
    if language == "rust":
        assert "/*" not in made and not made.startswith("*") and not made.endswith("/")
    if language == "python":  # a # comment, and a docstring that says the text
        tree = ast.parse(f'def f():\n    """x {made}.\n\n    y\n    """\n    # {made}\n')
        (function,) = tree.body
        assert isinstance(function, ast.FunctionDef) and len(function.body) == 1
        line = "".join(c if c.isprintable() else " " for c in text)
        assert ast.get_docstring(function, clean=False) == f"x {line}.\n\n    y\n    "


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_comments_stay_on_their_line(text: str) -> None:
    for language in LANGUAGES:
        _comment_is_safe(language, text)


@pytest.mark.parametrize("text", NASTY)
def test_nasty_comments_stay_on_their_line(text: str) -> None:
    for language in LANGUAGES:
        _comment_is_safe(language, text)


def test_comments_keep_readable_text() -> None:
    for text in (
        "attention scores Q·Kᵀ",
        "P·V → ⌈S / cp⌉ × h",
        "summary: 'quoted' (x) / 2 * 3",
        'decode_projections="qkvo", x=true',
    ):
        for language in LANGUAGES:
            assert literals.comment(language, text) == text


# Each program declares every corpus text as a string literal under a comment of it, and
# prints the literal's bytes (JavaScript: UTF-16 code units) in hex, one line each.
PROGRAMS: dict[str, tuple[str, Callable[[int, str], str], str, str]] = {
    "python": (
        "import sys\nout = []\n",
        lambda i, t: (
            f"# {literals.python_comment(t)}\n"
            f'def f{i}():\n    """{literals.python_comment(t)}."""\n'
            f"out.append({literals.python_string(t)})\n"
        ),
        "for s in out:\n    print(s.encode('utf-8', 'surrogatepass').hex())\n",
        "prog.py",
    ),
    "c": (
        "#include <stdio.h>\n",
        lambda i, t: (
            f"// {literals.c_comment(t)}\n"
            f"static const char s{i}[] = {literals.c_string(t)};  // {literals.c_comment(t)}\n"
        ),
        "",
        "prog.c",
    ),
    "rust": (
        "fn main() {\n    let out: Vec<&str> = vec![\n",
        lambda i, t: (
            f"        // {literals.rust_comment(t)}\n"
            f"        {literals.rust_string(t)}, // {literals.rust_comment(t)}\n"
        ),
        "    ];\n    for s in out {\n"
        '        println!("{}", s.bytes().map(|b| format!("{:02x}", b)).collect::<String>());\n'
        "    }\n}\n",
        "prog.rs",
    ),
    "js": (
        "const out = [\n",
        lambda i, t: (
            f"  /** {literals.js_comment(t)}. */ // {literals.js_comment(t)}\n"
            f"  {literals.js_string(t)},\n"
        ),
        "];\nfor (const s of out) {\n  let h = '';\n"
        "  for (let i = 0; i < s.length; i++) h += s.charCodeAt(i).toString(16).padStart(4, '0');\n"
        "  console.log(h);\n}\n",
        "prog.mjs",
    ),
    "go": (
        'package main\n\nimport (\n\t"encoding/hex"\n\t"fmt"\n)\n\nvar out = []string{\n',
        lambda i, t: (
            f"\t// {literals.go_comment(t)}\n\t{literals.go_string(t)}, // "
            f"{literals.go_comment(t)}\n"
        ),
        "}\n\nfunc main() {\n\tfor _, s := range out {\n"
        "\t\tfmt.Println(hex.EncodeToString([]byte(s)))\n\t}\n}\n",
        "prog.go",
    ),
}


def _expected(language: str, text: str) -> str:
    if language == "rust":
        return _scalar(text).encode("utf-8").hex()
    if language == "js":
        return text.encode("utf-16-be", "surrogatepass").hex()
    return _wtf8(text).hex()


def _build_and_run(language: str, path: Path, cwd: Path) -> str:
    assert shutil.which(TOOLS[language]), f"{TOOLS[language]} is missing: sh tests/toolchains.sh"
    binary = cwd / "prog"
    commands = {
        "python": [["python3", str(path)]],
        "c": [["cc", "-std=c11", "-trigraphs", "-Wall", "-o", str(binary), str(path)]],
        "rust": [["rustc", "--edition", "2021", "-o", str(binary), str(path)]],
        "js": [["node", str(path)]],
        "go": [["go", "build", "-o", str(binary), str(path)]],
    }[language]
    if language in ("c", "rust", "go"):
        commands.append([str(binary)])
    env = {**os.environ, "GOCACHE": str(cwd / "gocache"), "GOPATH": str(cwd / "gopath")}
    env |= {"GOPROXY": "off", "GO111MODULE": "off"}
    for command in commands:
        proc = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, env=env, timeout=300, check=False
        )
        assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("language", LANGUAGES)
def test_literals_compile_and_round_trip(language: str, tmp_path: Path) -> None:
    head, item, tail, name = PROGRAMS[language]
    texts = corpus()
    if language == "c":
        body = "".join(item(i, t) for i, t in enumerate(texts))
        prints = "".join(
            f'    for (size_t i = 0; i + 1 < sizeof s{i}; i++) printf("%02x", '
            f"(unsigned char)s{i}[i]);\n    putchar('\\n');\n"
            for i in range(len(texts))
        )
        source = f"{head}{body}\nint main(void) {{\n{prints}    return 0;\n}}\n"
    else:
        source = head + "".join(item(i, t) for i, t in enumerate(texts)) + tail
    path = tmp_path / name
    path.write_text(source, encoding="utf-8")
    lines = _build_and_run(language, path, tmp_path).splitlines()
    assert lines == [_expected(language, t) for t in texts]
    assert not [p.name for p in tmp_path.rglob("pwned*")]
