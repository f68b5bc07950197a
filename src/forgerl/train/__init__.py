"""The training loop, its configuration, checkpoints and supervised bootstrap."""
