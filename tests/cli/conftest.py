"""What the fast-path tests share: a cache of their own for each test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def fast_path_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache directory for this test, the cache on, and an entry that cannot be
    written failing the test (``SHARDCOST_DEBUG``) instead of passing unnoticed."""
    monkeypatch.setenv("SHARDCOST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SHARDCOST_DEBUG", "1")
    monkeypatch.delenv("SHARDCOST_NO_CACHE", raising=False)
    return tmp_path / "cache"
