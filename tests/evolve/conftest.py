"""The evolve tests share helpers in evolve_helpers.py. The suite runs with --import-mode=importlib,
which does not put test folders on sys.path, so this one does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def settings_for(tmp_path):
    from forgerl.evolve.settings import load_settings

    def make(**over):
        data = {"out": str(tmp_path / "evolve"), "budget": {"max_runs": 40, "steps_per_run": 0, "wall_s": 3600},
                "objective": {"validation_tasks": 32, "evaluation_tasks": 16},
                "space": {"scaffold": {"naming": ["default", "camel", "synonym", "kebab"],
                                       "response_layout": ["default", "json"]}},
                "halving": {"candidates": 4, "eta": 2, "seed": 0}}
        for key, value in over.items():
            data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
        return load_settings(None, **data)
    return make
