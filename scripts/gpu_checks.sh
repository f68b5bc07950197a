#!/usr/bin/env bash
# The GPU checks, as one script for a lent CUDA machine (STEPS picks and orders them):
#   tests: every gpu-marked test — tests/batching/test_gpu.py (FlexAttention tree vs per-call: fp32
#      logprobs, loss, gradients, MoE routing, many row lengths; bf16 within rounding noise) and
#      tests/train/test_gpu.py (`forgerl train` on CUDA: bf16 autocast over FP32 master weights, full
#      fine-tuning and LoRA, printing step times);
#   bench: `forgerl bench prefix-tree` with the ~0.5B Qwen2-style model in bf16, G=8, T=64 (per-call
#      timed on 2 of the 8 trajectories, scaled x4), then T=4,16 (per-call timed in full);
#   bench64: the T=64 part alone;
#   dist: the sharded trainer on one GPU (tests/train/test_gpu_sharded.py: FSDP2 over NCCL with world
#      size 1, FP32 parity with the one-process step, bf16 + FP32 head), then `forgerl train
#      --nproc-per-node 1 --device cuda` for 2 steps, then (when vLLM is importable) the vLLM tests;
#   spec: `forgerl bench engine --speculative` on CUDA: the default policy with and without its MTP
#      drafts at batch 1/4/16 (greedy; the bench asserts both arms generate the same tokens).
# Runs with whatever python has CUDA torch + transformers (PYTHON=...); a machine without the
# project's pure-Python deps can be given wheels: WHEELS=dir (installed into a private target dir).
# Output: $OUT (default ./gpu-out) holds tests.log and bench.log.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -n "${WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --target /tmp/forgerl-extra "$WHEELS"/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/forgerl-extra"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/device.txt"
run_tests() {
  timeout "${TEST_TIMEOUT:-300}" "$PY" -m pytest -q -s -m gpu tests/batching/test_gpu.py tests/train/test_gpu.py -p no:randomly -p no:cacheprovider \
    2>&1 | tee "$OUT/tests.log"
}
run_bench() {
  export COLUMNS=200
  timeout "${BENCH_TIMEOUT:-420}" bash -c "
    '$PY' -m forgerl.cli.main bench prefix-tree --model qwen-0.5b --device cuda --dtype bfloat16 --turns 64 --call-subset 2 &&
    '$PY' -m forgerl.cli.main bench prefix-tree --model qwen-0.5b --device cuda --dtype bfloat16 --turns 4,16 --call-subset 0
  " 2>&1 | tee "$OUT/bench.log"
}
run_bench64() {
  export COLUMNS=200
  timeout "${BENCH_TIMEOUT:-300}" "$PY" -m forgerl.cli.main bench prefix-tree --model qwen-0.5b --device cuda --dtype bfloat16 \
    --turns 64 --call-subset 2 2>&1 | tee "$OUT/bench64.log"
}
run_dist() {
  timeout "${TEST_TIMEOUT:-300}" "$PY" -m pytest -q -s -m gpu tests/train/test_gpu_sharded.py -p no:randomly -p no:cacheprovider \
    2>&1 | tee "$OUT/dist.log"
  timeout "${TRAIN_TIMEOUT:-300}" "$PY" -m forgerl.cli.main train --device cuda --steps 2 --nproc-per-node 1 \
    --run-dir "$OUT/dist-run" 2>&1 | tee -a "$OUT/dist.log"
  if "$PY" -c "import vllm" 2>/dev/null; then
    timeout "${TEST_TIMEOUT:-300}" "$PY" -m pytest -q -s tests/engine/vllm -p no:cacheprovider 2>&1 | tee -a "$OUT/dist.log"
  else
    echo "vllm not importable: the vllm-nccl check is not run" | tee -a "$OUT/dist.log"
  fi
}
run_spec() {
  export COLUMNS=200
  timeout "${BENCH_TIMEOUT:-300}" "$PY" -m forgerl.cli.main bench engine --speculative --model default --device cuda \
    --turns 4 2>&1 | tee "$OUT/spec.log"
}
# STEPS: which parts, in order (default: tests then bench)
for step in ${STEPS:-tests bench}; do "run_$step"; done
