from __future__ import annotations

import pytest

from forgerl.testing import CharTokenizer, build_micro_moe


@pytest.fixture(scope="module")
def tiny_model():
    return build_micro_moe()


@pytest.fixture()
def char_tokenizer():
    return CharTokenizer()
