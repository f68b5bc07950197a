"""Fixtures for the agent tests: the formats the loop is tested with and a seeded arithmetic task.
(`tokenizer`, the project's default tokenizer, comes from tests/conftest.py.)"""

from __future__ import annotations

import pytest

from forgerl.chat import get_format
from forgerl.envs.base import make_env, sample_task


@pytest.fixture(params=["minimax_m2", "hermes", "json_tools"])
def fmt(request):
    return get_format(request.param)


@pytest.fixture()
def task():
    return sample_task("arithmetic", seed=3)


@pytest.fixture()
def env():
    return make_env("arithmetic", seed=3)
