"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest

from forgerl.model.tokenizer import load_default_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    """The project's default tokenizer (shipped in forgerl/assets/tokenizer). Shared: don't mutate."""
    return load_default_tokenizer()


@pytest.fixture(autouse=True)
def _forget_test_families():
    """A family a test registers (a test double, a plug-in it loads) is gone after that test: left in
    the registry, later tests would list, validate and sample it (`forgerl envs validate` then fails
    on a double built to pass or fail on purpose). forgerl's own families stay: they register once,
    when their module is first imported."""
    from forgerl.envs import base

    before = set(base._FAMILIES)
    yield
    for name, family in list(base._FAMILIES.items()):
        if name not in before and not getattr(family.make_env, "__module__", "").startswith("forgerl."):
            base.unregister_family(name)
