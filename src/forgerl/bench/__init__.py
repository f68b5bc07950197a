"""Benchmarks, one module per comparison, behind `forgerl bench ...` (bench/README.md at the repo root).

    engine.py        the built-in engine vs transformers' generate (and vLLM: vllm.py); quiet vs
                     a competing CPU load, with and without the core plan (cores.py)
    prefix_tree.py   per-call samples vs concatenation vs the prefix tree (batching/)
    scheduler.py     sync vs FIFO vs greedy vs windowed rollout scheduling (rollout/)
    scheduler_real.py  the same, real: `forgerl train` sync vs windowed, wall time and reward
    weight_sync.py   weight push time: shared memory vs disk vs in-process (weights/)
    losses.py        CISPO vs GRPO vs DAPO, steps to a target reward (rl/)
    sandbox.py       what tool-call isolation costs (envs/sandbox/)
    router.py        K engine replicas: sticky + group routing vs round-robin (engine/router.py)

They live apart from the library so that the library's packages carry no benchmark code and
importing them never pulls a benchmark's dependencies. Nothing is imported here: each command
imports the one module it runs.
"""
