"""Text made safe for generated source: string literals and comments of each export language.

Every piece of text an export writes into source (a layout's summary, step labels, check
messages, layout names) goes through one of two functions of its language:

* ``string(text)``: a complete string literal of the language that denotes exactly
  ``text``. Printable ASCII stays as it is; a quote, a backslash, every control character
  and everything beyond ASCII is an escape, so the literal is plain ASCII whatever the
  text holds. (C writes the UTF-8 bytes as octal escapes and ``?`` as ``\\?``, so no
  trigraph forms; a lone surrogate, which only the Python API can produce, is written as
  its surrogate-pass UTF-8 bytes in C and Go, as U+FFFD in Rust, and as itself elsewhere.)
* ``comment(text)``: the text, still readable, on one line and unable to end the comment
  the templates put it in: every character that is not printable (controls, CR, LF,
  U+0085, U+2028, U+2029, format characters, surrogates ...) becomes a space; a line
  comment of C, Rust, JavaScript or Go never ends in a backslash (nor C's ``??/``) and
  holds no ``*/`` (Rust's, whose block comments nest, no ``/*`` either); the Python text
  escapes backslashes, and double quotes that could close the ``\"\"\"`` docstring the
  Python template puts summaries in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

_QUOTE, _BACKSLASH = '"', "\\"


def _printable_ascii(char: str) -> bool:
    return " " <= char <= "~"


def _surrogate(char: str) -> bool:
    return "\ud800" <= char <= "\udfff"


def _one_line(text: str) -> str:
    """``text`` with every non-printable character (line breaks included) as a space."""
    return "".join(c if c.isprintable() else " " for c in text)


def _no_trailing_backslash(text: str, ends: tuple[str, ...] = (_BACKSLASH,)) -> str:
    """``text``, with a full stop after a final backslash (even one before spaces), so
    that a line comment holding it cannot splice the next line into itself."""
    stripped = text.rstrip()
    return stripped + "." if stripped.endswith(ends) else text


def _no_block_end(text: str) -> str:
    """``text`` holding no ``*/``, and forming none with a ``*`` before it or a ``/`` after
    it: safe in a ``/* ... */`` comment as well as a line comment."""
    text = text.replace("*/", "*\\/")
    if text.startswith("/"):
        text = " " + text
    if text.endswith("*"):
        text += " "
    return text


def _quoted(
    chars: Iterable[str],
    escape: Callable[[str], str],
    plain: Callable[[str], bool] = _printable_ascii,
) -> str:
    """A double-quoted literal: ``plain`` characters (printable ASCII) as they are, a quote
    or backslash after a backslash, and every other character as ``escape`` writes it."""
    out = []
    for c in chars:
        if c in (_QUOTE, _BACKSLASH):
            out.append(_BACKSLASH + c)
        elif plain(c):
            out.append(c)
        else:
            out.append(escape(c))
    return _QUOTE + "".join(out) + _QUOTE


def _python_escape(c: str) -> str:
    if ord(c) < 0x100:
        return f"\\x{ord(c):02x}"
    return f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"


def python_string(text: str) -> str:
    """A Python string literal (ASCII) of exactly ``text``."""
    return _quoted(text, _python_escape)


def python_comment(text: str) -> str:
    """``text`` for a ``#`` comment or inside a ``\"\"\"`` docstring: one line, every
    backslash escaped (no escape sequence forms), and a double quote escaped where it
    could help close the docstring: before another, or last."""
    line = _one_line(text).replace(_BACKSLASH, "\\\\")
    return re.sub(r'"(?="|\Z)', r'\\"', line)


def c_string(text: str) -> str:
    """A C string literal (ASCII) of ``text``'s UTF-8 bytes; ``?`` escaped (no trigraphs)."""
    chars = map(chr, text.encode("utf-8", "surrogatepass"))
    # octal always three digits, so the next character stays out of the escape
    return _quoted(
        chars,
        lambda c: "\\?" if c == "?" else f"\\{ord(c):03o}",
        lambda c: c != "?" and _printable_ascii(c),
    )


def c_comment(text: str) -> str:
    """``text`` for a ``//`` (or ``/* */``) comment: one line, no ``*/``, ending in
    neither ``\\`` nor ``??/``."""
    return _no_block_end(_no_trailing_backslash(_one_line(text), (_BACKSLASH, "??/")))


def rust_string(text: str) -> str:
    """A Rust string literal (ASCII) of ``text`` (a lone surrogate becomes U+FFFD)."""
    # a Rust char is a scalar value: no surrogate
    return _quoted(text, lambda c: f"\\u{{{0xFFFD if _surrogate(c) else ord(c):x}}}")


def rust_comment(text: str) -> str:
    """``text`` for a ``//`` or ``///`` (or ``/* */``, which nest) comment: one line, no
    ``*/`` nor ``/*``, no final backslash."""
    text = _no_block_end(_no_trailing_backslash(_one_line(text))).replace("/*", "/\\*")
    if text.startswith("*"):
        text = " " + text
    if text.endswith("/"):
        text += " "
    return text


def js_string(text: str) -> str:
    """A JavaScript string literal (ASCII, and valid JSON) of exactly ``text``."""

    def escape(c: str) -> str:  # UTF-16 code units, as JSON writes them
        units = c.encode("utf-16-be", "surrogatepass")
        return "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))

    return _quoted(text, escape)


def js_comment(text: str) -> str:
    """``text`` for a ``//`` or ``/** ... */`` comment: one line, no ``*/``, no final
    backslash."""
    return _no_block_end(_no_trailing_backslash(_one_line(text)))


def go_string(text: str) -> str:
    """A Go interpreted string literal (ASCII) of exactly ``text``'s UTF-8 bytes."""

    def escape(c: str) -> str:
        if ord(c) < 0x80:
            return f"\\x{ord(c):02x}"
        if _surrogate(c):  # no \u escape may name one: its surrogate-pass bytes
            return "".join(f"\\x{b:02x}" for b in c.encode("utf-8", "surrogatepass"))
        return f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"

    return _quoted(text, escape)


def go_comment(text: str) -> str:
    """``text`` for a ``//`` (or ``/* */``) comment: one line, no ``*/``, no final
    backslash."""
    return _no_block_end(_no_trailing_backslash(_one_line(text)))


@dataclass(frozen=True)
class Literals:
    """One language's two ways of writing text into source."""

    string: Callable[[str], str]
    comment: Callable[[str], str]


LITERALS: dict[str, Literals] = {
    "python": Literals(python_string, python_comment),
    "c": Literals(c_string, c_comment),
    "rust": Literals(rust_string, rust_comment),
    "js": Literals(js_string, js_comment),
    "go": Literals(go_string, go_comment),
}


def string(language: str, text: str) -> str:
    """A string literal of ``language`` denoting ``text``."""
    return LITERALS[language].string(text)


def comment(language: str, text: str) -> str:
    """``text`` made safe inside ``language``'s comments as the export templates use them."""
    return LITERALS[language].comment(text)
