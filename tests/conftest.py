"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest

from forgerl.model.tokenizer import load_default_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    """The project's default tokenizer (shipped in forgerl/assets/tokenizer). Shared: don't mutate."""
    return load_default_tokenizer()
