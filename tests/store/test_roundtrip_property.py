"""Any valid trajectory comes back from the store equal to what went in (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgerl.store import TrajectoryStore
from forgerl.types import PROMOTED_METADATA_KEYS, LLMCall, Message, Trajectory, TrajectoryStatus

finite = st.floats(allow_nan=False, allow_infinity=False)
json_scalars = st.none() | st.booleans() | st.integers(-2**53, 2**53) | finite | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)


@st.composite
def calls(draw):
    n = draw(st.integers(0, 40))
    return LLMCall(prompt_ids=draw(st.lists(st.integers(0, 200_000), max_size=30)),
                   completion_ids=draw(st.lists(st.integers(0, 200_000), min_size=n, max_size=n)),
                   completion_logprobs=draw(st.lists(st.floats(-1e4, 0.0), min_size=n, max_size=n)),
                   loss_mask=draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)),
                   policy_version=draw(st.integers(0, 10**6)), finish_reason=draw(st.sampled_from(["stop", "length"])))


@st.composite
def trajectories(draw):
    metadata = draw(st.dictionaries(st.text(max_size=10).filter(lambda k: k not in PROMOTED_METADATA_KEYS),
                                    json_values, max_size=4))
    return Trajectory(
        task_id=draw(st.text(max_size=12)), group_id=draw(st.none() | st.text(max_size=8)),
        calls=draw(st.lists(calls(), max_size=4)),
        messages=[Message(role="user", content=draw(st.text(max_size=200)))],  # any unicode text
        reward=draw(st.none() | finite), status=draw(st.sampled_from(list(TrajectoryStatus))),
        metadata=metadata, created_at=draw(finite), perturbations=draw(st.none() | st.dictionaries(
            st.text(max_size=5), json_values, max_size=2)),
        family=draw(st.none() | st.text(max_size=10)), difficulty=draw(st.none() | st.integers(-100, 100) | finite),
        rollout_step=draw(st.none() | st.integers(0, 10**6)), end_reason=draw(st.none() | st.text(max_size=20)))


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One store for all examples (each example gets its own run): opening a file per example
    would spend the test's time on file creation instead of on trajectories."""
    with TrajectoryStore(tmp_path_factory.mktemp("roundtrip")) as store:
        yield store


@settings(max_examples=60, deadline=None)
@given(trajs=st.lists(trajectories(), min_size=1, max_size=3, unique_by=lambda t: t.id))
def test_any_trajectory_round_trips(shared_store, trajs):
    run = shared_store.add_run()
    shared_store.add_trajectories(trajs, run)
    assert [shared_store.get_trajectory(t.id) for t in trajs] == trajs
    assert {t.id for t in shared_store.query(run_id=run)} == {t.id for t in trajs}
