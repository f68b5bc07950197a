"""Asynchronous rollouts: the windowed-FIFO scheduler (bounded reordering, bounded staleness),
its durable ledger for lossless restarts, and the sources that feed the training loop. Weight
transport lives in forgerl.weights, the scheduler benchmark in forgerl.bench.scheduler.

Submodules are imported on use (`forgerl.rollout.scheduler`, `.window`, `.ledger`, `.source`)
so that importing the package stays cheap.
"""
