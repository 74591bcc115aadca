"""Test isolation: layers and layouts a test registers (user layouts, test layers) do not
outlive it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shardcost.formulas import registry


@pytest.fixture(autouse=True)
def _restore_the_registry() -> Iterator[None]:
    layouts, layers = dict(registry._REGISTRY), dict(registry._LAYERS)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(layouts)
    registry._LAYERS.clear()
    registry._LAYERS.update(layers)
