"""Reading the files users name, writing the files they ask for, and quoting what they
type, safely.

Standard library only. A path may name anything: a FIFO (``open`` would block until a
writer comes), ``/dev/zero`` (endless), a directory, a file of gigabytes. Only regular
files are read, checked with ``stat`` (which never blocks), and at most ``limit`` bytes
of them, so a file that grows while it is read is still bounded. Text a user typed goes
into messages with its control characters escaped, so an error stays one line and an
escape sequence never reaches the terminal. An ``-o FILE`` never names one of the
command's inputs, and is written whole or not at all.
"""

from __future__ import annotations

import os
import stat
import sys
import unicodedata
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from shardcost.errors import InputError

# Unicode categories that cannot be shown on one line: controls, format characters,
# line and paragraph separators, surrogates, private use, unassigned.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def printable(text: object) -> str:
    """``text`` with every character that cannot be shown on one line escaped
    (``\\n``, ``\\x1b``, ``\\u2028`` ...)."""
    return "".join(
        ascii(ch)[1:-1] if unicodedata.category(ch) in _UNPRINTABLE else ch for ch in str(text)
    )


def read_text(path: str | os.PathLike[str], what: str, limit: int) -> str:
    """The UTF-8 text of the regular file ``path`` (``what`` it should be, for messages),
    at most ``limit`` bytes; one-line InputError otherwise."""
    shown = printable(os.fspath(path))
    try:
        info = Path(path).stat()
    except FileNotFoundError:
        raise InputError(f"{shown}: no such file (give {what})") from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot read it: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{shown}: not a regular file (a directory); give {what}")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{shown}: not a regular file (a device, pipe or socket); give {what}")
    if info.st_size > limit:
        raise InputError(f"{shown}: {info.st_size:,} bytes; {what} is at most {limit:,}")
    try:
        with Path(path).open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise InputError(f"{shown}: cannot read it: {exc.strerror}") from None
    if len(data) > limit:
        raise InputError(f"{shown}: more than {limit:,} bytes; {what} is at most {limit:,}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{shown}: not UTF-8 text; give {what}") from None


def silence_stdout() -> None:
    """Point standard output at /dev/null: the reader went away (``| head``) or the disk
    is full, and Python's last flush at exit must not fail again (the Python docs'
    recipe for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with suppress(OSError, ValueError):  # a stdout without a file descriptor (tests)
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def check_target(target: Path, inputs: Sequence[Path]) -> None:
    """Refuse an -o that names one of the command's ``inputs``, or a folder that is not
    there (it is never created: a typo would otherwise scatter files)."""
    for source in inputs:
        try:
            same = source.exists() and target.exists() and source.samefile(target)
        except OSError:
            same = False
        if same:
            raise InputError(f"-o {printable(target)} is the command's own input; write elsewhere")
    folder = target.parent
    if not folder.is_dir():
        raise InputError(f"cannot write {printable(target)}: no folder {printable(folder)}")


def write_atomically(target: Path, text: str) -> None:
    """``text`` into ``target`` through a temporary file in the same folder, renamed."""
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"cannot write {printable(target)}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        Path(tmp).replace(target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write {printable(target)}: {exc.strerror}") from None


def write_output(target: Path, text: str, inputs: Sequence[Path]) -> str:
    """``-o FILE`` as a cached answer writes it, as the command line does: refused where
    it names one of ``inputs`` or a folder that is not there, then written whole or not
    at all. Returns the line that says so."""
    check_target(target, inputs)
    write_atomically(target, text)
    return f"wrote {printable(target)}"
