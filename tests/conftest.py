"""Test isolation: layers and layouts a test registers (user layouts, test layers) do not
outlive it, and the on-disk cache (``shardcost.cache``) of the whole session, subprocesses
included, is a temporary directory: a test run never writes to ~/.cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shardcost.formulas import registry


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHARDCOST_CACHE_DIR", str(tmp_path_factory.mktemp("shardcost-cache")))
        yield


@pytest.fixture(autouse=True)
def _restore_the_registry() -> Iterator[None]:
    layouts, layers = dict(registry._REGISTRY), dict(registry._LAYERS)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(layouts)
    registry._LAYERS.clear()
    registry._LAYERS.update(layers)
