"""An on-disk cache for what is costly to derive and cheap to reuse: generated programs,
verdicts.

Every entry is keyed by a digest of what it was derived from: the package's own source
files (formulas, layouts, printers, templates, the hardware table), the SymPy version and
the Python version, plus the caller's parts (a layout file's text, the conventions...).
Editing any source file or upgrading SymPy therefore misses every old entry; nothing is
ever served stale. The cache is an optimisation only: a directory that cannot be written
or an entry that cannot be read is treated as a miss, never as an error.

Where: ``$SHARDCOST_CACHE_DIR``, else ``$XDG_CACHE_HOME/shardcost``, else
``~/.cache/shardcost``. ``SHARDCOST_NO_CACHE=1`` turns it off.

This module imports only the standard library: the numeric commands read the cache
before (and instead of) importing SymPy.
"""

# os.path, not pathlib: importing pathlib costs a cold start about 10 ms
# ruff: noqa: PTH103, PTH105, PTH108, PTH111, PTH116, PTH118, PTH120, PTH123

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

# The package's folders whose files decide what is generated. ``importlib`` finds each
# without importing it (only its parent, ``shardcost``, which is light), so computing the
# digest loads no SymPy.
_PACKAGES = (
    "shardcost",
    "shardcost.symbolic",
    "shardcost.formulas",  # and formulas/layers/, below it
    "shardcost.codegen",
    "shardcost.reports",
)
_SUFFIXES = (".py", ".toml", ".j2")
MAX_ENTRY = 64 << 20  # bytes: an entry larger than this is not read (a damaged cache)


def enabled() -> bool:
    """False when ``SHARDCOST_NO_CACHE`` is set to anything but ``0`` or empty."""
    return os.environ.get("SHARDCOST_NO_CACHE", "") in ("", "0")


def directory() -> Path:
    """The cache's root directory (not created here)."""
    from pathlib import Path

    return Path(_root())


def _root() -> str:
    explicit = os.environ.get("SHARDCOST_CACHE_DIR")
    if explicit:
        return explicit
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "shardcost")


def _folders() -> list[str]:
    folders = []
    for name in _PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        # in a checkout ``shardcost`` also lists the repository root (for the engine
        # folders): only its own folder counts, the others are their own packages
        own = os.path.dirname(spec.origin) if spec.origin else None
        folders.extend(p for p in spec.submodule_search_locations if own is None or p == own)
    return folders


def _sources() -> list[tuple[str, str]]:
    """(folder, path relative to it) of every source file, in a fixed order."""
    found = []
    for folder in _folders():
        for where, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            rel = os.path.relpath(where, folder)
            for name in sorted(files):
                if name.endswith(_SUFFIXES):
                    found.append((folder, name if rel == "." else f"{rel}/{name}"))
    return found


def _sympy_version() -> str:
    """SymPy's version, read from its ``release.py`` (importing SymPy takes 0.3 s)."""
    spec = importlib.util.find_spec("sympy")
    if spec is None or spec.origin is None:  # pragma: no cover - a dependency
        return "?"
    try:
        with open(os.path.join(os.path.dirname(spec.origin), "release.py"), encoding="utf-8") as f:
            found = re.search(r"__version__\s*=\s*[\"']([^\"']+)", f.read())
    except OSError:  # pragma: no cover
        return "?"
    return found.group(1) if found else "?"


@cache
def source_digest() -> str:
    """A digest of the package's source, the SymPy version and the Python version.

    Reading and hashing every source file takes a few milliseconds; the digest of a
    given set of (file, size, modification time) is remembered in the cache, so a run
    whose files have not changed only stats them."""
    sources = _sources()
    head = f"sympy {_sympy_version()}; python {sys.version_info[:3]}\n"
    stamp = hashlib.sha256(head.encode())
    for folder, rel in sources:
        try:
            st = os.stat(os.path.join(folder, rel))
        except OSError:
            continue
        stamp.update(f"{folder}/{rel} {st.st_size} {st.st_mtime_ns}\n".encode())
    remembered = read("digests", stamp.hexdigest()[:40])
    if remembered is not None and re.fullmatch("[0-9a-f]{64}", remembered):
        return remembered
    h = hashlib.sha256(head.encode())
    for folder, rel in sources:
        try:
            with open(os.path.join(folder, rel), "rb") as f:
                data = f.read()
        except OSError:
            continue
        h.update(f"{rel} {len(data)}\n".encode())
        h.update(data)
    digest = h.hexdigest()
    write("digests", stamp.hexdigest()[:40], digest)
    return digest


def key(*parts: str | bytes) -> str:
    """The entry key for ``parts`` under this source: a hex digest."""
    h = hashlib.sha256(source_digest().encode())
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:40]


def _path(kind: str, entry: str, suffix: str) -> str:
    return os.path.join(_root(), kind, f"{entry}{suffix}")


def read(kind: str, entry: str, suffix: str = ".txt") -> str | None:
    """The text stored under ``kind``/``entry``, or None (a miss, or the cache is off)."""
    if not enabled():
        return None
    path = _path(kind, entry, suffix)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_ENTRY + 1)
    except OSError:
        return None
    if len(data) > MAX_ENTRY:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def write(kind: str, entry: str, text: str, suffix: str = ".txt") -> bool:
    """Store ``text`` atomically (a temporary file renamed into place); False when the
    cache is off or cannot be written (never an error)."""
    if not enabled():
        return False
    path = _path(kind, entry, suffix)
    try:
        import tempfile  # only when writing: it is slow to import

        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        return False
    return True
