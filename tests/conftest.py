"""Shared test settings."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def synthesis_cache(tmp_path_factory):
    """One synthesis cache for the session: hermetic, yet each distinct module is synthesized once."""
    patch = pytest.MonkeyPatch()
    patch.setenv("CODESIGN_CACHE_DIR", str(tmp_path_factory.mktemp("codesign-cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def dense_digits(tmp_path_factory):
    """A real dense checkpoint: digits_cnn trained for 4 epochs (about 90 % test accuracy)."""
    from codesign.prune import train_dense

    path = tmp_path_factory.mktemp("dense") / "dense.pt"
    train_dense("digits_cnn", "digits", path, epochs=4)
    return path
