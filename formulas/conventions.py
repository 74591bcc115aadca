"""Conventions: every accounting choice the seeds make differently, named, with a default.

Each one is shown, in words, under "Assumptions" in every report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import TypeVar

from shardcost.errors import InvalidValueError, UnknownNameError, lookup

_V = TypeVar("_V", bool, str)


class Phase(StrEnum):
    """Inference phase: the whole prompt at once, or one step of generation."""

    PREFILL = "prefill"
    DECODE = "decode"


def phase(name: object) -> Phase:
    """The Phase called ``name``; UnknownNameError otherwise."""
    try:
        return Phase(str(name).strip().lower())
    except ValueError:
        allowed = ", ".join(p.value for p in Phase)
        raise UnknownNameError(f"phase={name!r} is unknown; phases: {allowed}") from None


@dataclass(frozen=True)
class Convention:
    """One named accounting choice: its values, default, phases and wording."""

    name: str
    default: bool | str
    choices: tuple[bool | str, ...]
    phases: tuple[Phase, ...]
    meaning: str
    wording: Mapping[bool | str, str]  # value -> the assumption in words

    def describe(self, value: bool | str) -> str:
        """The assumption this value makes, in words."""
        return self.wording[value]

    def parse(self, raw: object) -> bool | str:
        """``raw`` (a bool, or text from the command line) as one of ``choices``."""
        if isinstance(self.default, bool):
            return parse_bool(self.name, raw)
        text = str(raw).strip().lower()
        if text in self.choices:
            return text
        allowed = " | ".join(str(c) for c in self.choices)
        raise InvalidValueError(f"{self.name}={raw!r} is not allowed; {self.name} takes {allowed}")


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def parse_bool(key: str, raw: object) -> bool:
    """A bool, or text: true/false, yes/no, on/off, 1/0."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidValueError(f"{key}={raw!r} is not a boolean; {key} takes true or false")


def _option(default: _V, phases: tuple[Phase, ...], meaning: str, wording: Mapping[_V, str]) -> _V:
    """A field of Conventions: its default, and the rest of its Convention as metadata.
    Its choices are the values ``wording`` describes, in that order."""
    return field(
        default=default, metadata={"phases": phases, "meaning": meaning, "wording": wording}
    )


@dataclass(frozen=True)
class Conventions:
    """The value of every convention, defaults as in DESIGN.md; each field declares its
    Convention (CONVENTIONS is read off these fields)."""

    attention_keys_include_new_token: bool = _option(
        True,
        (Phase.DECODE,),
        "decode: each new token attends to itself as well as the past",
        {
            True: "each new token attends to the past tokens and to itself "
            "(S_past + T keys; seed 000, seed 001 Test 3)",
            False: "each new token attends to the past tokens only "
            "(S_past keys; seed 001 CP-3a, CP-5)",
        },
    )
    kv_includes_new_token: bool = _option(
        False,
        (Phase.DECODE,),
        "decode: the KV cache counted includes the new token's K/V",
        {
            True: "the KV cache holds the new token's K/V too (S_past + T positions; "
            "seed 001 Test 3)",
            False: "the KV cache holds the past tokens only (S_past positions; "
            "seed 000, seed 001 CP-3a, CP-5)",
        },
    )
    decode_projections: str = _option(
        "qkvo",
        (Phase.DECODE,),
        "decode: which projections a step counts (qkvo | qo | o)",
        {
            "qkvo": "a decode step computes the Q, K, V and O projections of the new tokens "
            "(seed 000, seed 001 Test 3)",
            "qo": "a decode step counts the Q and O projections; K/V of the new tokens are "
            "owned elsewhere (seed 001 CP-5)",
            "o": "a decode step counts only the output projection; Q/K/V are owned outside "
            "the attention core (seed 001 CP-3a)",
        },
    )
    ffn_gated: bool = _option(
        True,
        (Phase.PREFILL, Phase.DECODE),
        "FFN: gated (gate, up and down matrices, as SwiGLU) or plain (up and down)",
        {
            True: "the FFN is gated (SwiGLU): gate and up projections d -> d_ff, a down "
            "projection d_ff -> d; three matrices",
            False: "the FFN is a plain MLP: an up projection d -> d_ff and a down projection "
            "d_ff -> d; two matrices",
        },
    )
    logits_for_all_tokens: bool = _option(
        False,
        (Phase.PREFILL,),
        "LM head, prefill: logits for every position, or for each sequence's last only",
        {
            True: "prefill computes logits for every position, as a plain forward pass "
            "does (B × S rows)",
            False: "prefill computes logits for each sequence's last position only, as "
            "serving does (B rows)",
        },
    )
    materialize_full_hidden_after_tp: bool = _option(
        True,
        (Phase.PREFILL, Phase.DECODE),
        "TP x CP: gather the full hidden output on every chip after attention",
        {
            True: "after attention, a TP all-gather materialises the full d-wide output on "
            "every chip (seed 001 CP-4, CP-5)",
            False: "each chip keeps only its head slice of the output (d/tp wide); no TP "
            "all-gather",
        },
    )

    def as_dict(self) -> dict[str, bool | str]:
        """Name -> value, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


CONVENTIONS: tuple[Convention, ...] = tuple(
    Convention(
        name=f.name,
        default=f.default,
        choices=tuple(f.metadata["wording"]),
        phases=f.metadata["phases"],
        meaning=f.metadata["meaning"],
        wording=f.metadata["wording"],
    )
    for f in fields(Conventions)
)
BY_NAME: dict[str, Convention] = {c.name: c for c in CONVENTIONS}


def convention(name: str) -> Convention:
    """The convention called ``name``; UnknownNameError otherwise."""
    return lookup(BY_NAME, name, "convention")
