"""Test isolation: layouts a test registers (user layouts) do not outlive it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shardcost.formulas import registry as layouts


@pytest.fixture(autouse=True)
def _restore_layout_registry() -> Iterator[None]:
    saved = dict(layouts._REGISTRY)
    yield
    layouts._REGISTRY.clear()
    layouts._REGISTRY.update(saved)
