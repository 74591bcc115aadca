"""Generated programs kept on disk between runs, so that a new process does not derive
them again.

Deriving a layout's Programs (``python.variants``), its compiled function's source
(``python.module_source``) and the blocked numpy programs of each call pattern
(``blocked.blocked_source``) is SymPy work: about 2.4 s for the layers a whole-model plan
calls, every run. What they give is plain data (SymPy expressions pickle and load in
milliseconds), so each is stored in the package's cache (``shardcost.cache``: keyed by a
digest of the package's sources, SymPy's and Python's versions, and here by the
layout, phase and arguments) and loaded the next time.

Only the package's own layouts are stored: a user's layout (a TOML file, a Python
definition) has no name that says what it was built from. Anything that goes wrong
(a damaged entry, a value that does not pickle, a cache that cannot be written) falls
back to deriving, as if the cache were off.
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

from shardcost import cache
from shardcost.formulas import Layout

KIND = "codegen"
T = TypeVar("T")


def ident(layout: Layout, *args: Any) -> tuple[Any, ...] | None:
    """What names a derivation of ``layout`` with ``args`` across processes, or None for a
    layout that is not the package's own."""
    return (layout.layer, layout.name, *args) if layout.built_in else None


def stored(what: str, name: tuple[Any, ...] | None, build: Callable[[], T]) -> T:
    """``build()``, or what an earlier run stored for ``what`` and ``name`` (None: never
    stored)."""
    if name is None or not cache.enabled():
        return build()
    entry = cache.key(what, repr(name))
    text = cache.read(KIND, entry, ".pickle")
    if text is not None:
        try:
            return pickle.loads(base64.b64decode(text, validate=True))  # type: ignore[no-any-return]
        except Exception:  # any damage at all: derive it again, and store it anew
            pass
    value = build()
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return value
    cache.write(KIND, entry, base64.b64encode(data).decode("ascii"), ".pickle")
    return value
