"""Training: checkpoints, EMA, the engine that trains every recipe."""
