"""``shardcost verify`` answered from the on-disk cache, before SymPy is imported.

verify's verdicts are deterministic: they follow from the package's source (layouts,
layers, the engine), the SymPy and Python versions (all three folded into every key by
``shardcost.cache``), the command's arguments (layouts, phase, layer, conventions,
format) and the bytes of each ``--file`` it reads. A run that ends in verdicts (exit 0 or
1) stores what it printed and its exit status under a key of all of these; the same
command again prints the same bytes, the elapsed time of the run that proved them
included, and exits with the same status, importing neither SymPy nor the engine.

What is stored is the rendered output, not the verdicts: rendering needs the claims'
SymPy expressions, and a second renderer beside ``reports.verdicts`` would be a second
copy of the format to keep in step. Table and JSON output are separate entries.

Anything this small parser is not sure of falls through to the full command: --help, an
option it does not know (an abbreviation such as ``--fi``), a value that starts with
``-``, a ``--file`` that is not a readable regular file, or a process whose layout
registry holds layouts that are not built in (``define_layout`` before ``cli.main``).
Bad input (exit 2) and internal errors (3) are never stored. An entry that cannot be read
or does not check out (truncated, edited, another key's) is a miss.

The full command stores its result only when the request argparse made of the arguments
is the one this parser made of them, and the ``--file`` bytes are still those the key was
made from. This module imports only the standard library.
"""

from __future__ import annotations

import hashlib
import json
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from . import cache

KIND = "verify"
ENTRY_FORMAT = 1  # how an entry is laid out; a new layout makes old entries misses
MAX_FILE = 1 << 20  # bytes: a larger --file is left to the full command (which refuses it)
_BUILT_IN = "shardcost.formulas.layers."  # the modules built-in layouts are defined in
_VALUED = ("--file", "--phase", "--layer", "--format")
_FLAGS = ("--all-conventions",)
_CHOICES = {"--phase": ("prefill", "decode", "both"), "--format": ("table", "json")}


class Request(NamedTuple):
    """What a verify command asks for, as ``_cmd_verify`` reads argparse's namespace."""

    names: tuple[str, ...] = ()  # layouts, in order
    assignments: tuple[str, ...] = ()  # CONVENTION=VALUE, in order
    files: tuple[str, ...] = ()  # --file paths, as Path prints them
    phase: str = "both"
    layer: str | None = None
    all_conventions: bool = False
    format: str = "table"


class _Pending(NamedTuple):
    argv: tuple[str, ...]
    request: Request
    key: str


_pending: _Pending | None = None  # the miss of this process's latest verify command


def parse(argv: Sequence[str]) -> Request | None:
    """The request of ``verify ...`` arguments; None for another command or anything this
    parser is not sure argparse reads the same way."""
    if not argv or argv[0] != "verify":
        return None
    names: list[str] = []
    assignments: list[str] = []
    files: list[str] = []
    options: dict[str, str] = {}
    every = False
    tokens = list(argv[1:])
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("-"):
            (assignments if "=" in token else names).append(token)
            continue
        option, eq, value = token.partition("=")
        if option in _FLAGS and not eq:
            every = True
            continue
        if option not in _VALUED:
            return None  # --help, --, an abbreviation, a typo: argparse decides
        if not eq:
            if i == len(tokens):
                return None
            value = tokens[i]
            i += 1
        if value.startswith("-") or value not in _CHOICES.get(option, (value,)):
            return None
        if option == "--file":
            files.append(str(Path(value)))
        else:
            options[option] = value
    return Request(
        tuple(names),
        tuple(assignments),
        tuple(files),
        options.get("--phase", "both"),
        options.get("--layer"),
        every,
        options.get("--format", "table"),
    )


def _file_bytes(name: str) -> bytes | None:
    """A --file's bytes, when it is a regular file of at most MAX_FILE bytes (a FIFO or a
    device is left to the full command: opening one may wait for a writer)."""
    path = Path(name)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None
        with path.open("rb") as f:
            data = f.read(MAX_FILE + 1)
    except OSError:
        return None
    return data if len(data) <= MAX_FILE else None


def _key(argv: Sequence[str], request: Request) -> str | None:
    """The entry key: the arguments as given and each --file's bytes (None when one
    cannot be read)."""
    parts: list[str | bytes] = [KIND, str(ENTRY_FORMAT), json.dumps(list(argv))]
    for name in request.files:
        data = _file_bytes(name)
        if data is None:
            return None
        parts.append(data)
    return cache.key(*parts)


def _pristine() -> bool:
    """Whether every registered layout is a built-in one (true before the engine loads)."""
    registry = sys.modules.get("shardcost.formulas.registry")
    if registry is None:
        return True
    layouts = getattr(registry, "_REGISTRY", None)
    if not isinstance(layouts, dict):
        return False
    return all(
        str(getattr(lay.build, "__module__", "")).startswith(_BUILT_IN) for lay in layouts.values()
    )


def _digest(stdout: str, status: int) -> str:
    return hashlib.sha256(f"{status}\n{stdout}".encode()).hexdigest()


def _entry(key: str, stdout: str, status: int) -> str:
    record = {
        "format": ENTRY_FORMAT,
        "key": key,
        "status": status,
        "stdout": stdout,
        "sha256": _digest(stdout, status),
    }
    return json.dumps(record)  # ASCII: any text, even a lone surrogate, round-trips


def _replay(key: str, text: str | None) -> tuple[str, int] | None:
    """(stdout, status) of a stored entry that checks out; None for anything else."""
    if text is None:
        return None
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        return None
    if not isinstance(record, dict) or record.get("format") != ENTRY_FORMAT:
        return None
    stdout, status = record.get("stdout"), record.get("status")
    if record.get("key") != key or not isinstance(stdout, str) or status not in (0, 1):
        return None
    if type(status) is not int or record.get("sha256") != _digest(stdout, status):
        return None
    return stdout, status


def try_cached(argv: Sequence[str]) -> int | None:
    """Answer ``verify ...`` from the cache: print the stored output and return its exit
    status; None on a miss, for another command, or whenever in doubt (the caller then
    runs the command, which stores its result on a miss)."""
    global _pending
    _pending = None
    argv = tuple(argv)
    request = parse(argv)
    if request is None or not cache.enabled() or not _pristine():
        return None
    key = _key(argv, request)
    if key is None:
        return None
    found = _replay(key, cache.read(KIND, key, ".json"))
    if found is None:
        _pending = _Pending(argv, request, key)
        return None
    stdout, status = found
    try:
        sys.stdout.write(stdout)
        sys.stdout.flush()
    except UnicodeEncodeError:
        return None  # nothing was written: the command fails as it would have
    except BrokenPipeError:
        sys.stderr.close()  # as cli.main: the reader went away
        return 0
    return status


def remember(request: Request, stdout: str, status: int) -> bool:
    """Store what a verify command printed and its exit status, when ``try_cached`` missed
    on the same request in this process (and the --file bytes are unchanged since)."""
    global _pending
    pending, _pending = _pending, None
    if pending is None or pending.request != request or status not in (0, 1):
        return False
    if not _pristine() or _key(pending.argv, request) != pending.key:
        return False
    return cache.write(KIND, pending.key, _entry(pending.key, stdout, status), ".json")
