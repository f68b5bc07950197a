"""Asynchronous rollouts: the windowed-FIFO scheduler (bounded reordering, bounded staleness),
its durable ledger for lossless restarts, and cross-process weight sync with a stale-weights alarm.

Submodules are imported on use (`forgerl.rollout.scheduler`, `.window`, `.ledger`, `.weights`,
`.bench`) so that importing the package stays cheap.
"""
