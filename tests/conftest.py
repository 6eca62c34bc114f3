"""Shared test settings."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def synthesis_cache(tmp_path_factory):
    """One synthesis cache for the session: hermetic, yet each distinct module is synthesized once."""
    patch = pytest.MonkeyPatch()
    patch.setenv("CODESIGN_CACHE_DIR", str(tmp_path_factory.mktemp("codesign-cache")))
    yield
    patch.undo()
