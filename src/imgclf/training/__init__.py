"""Training a model: the epoch loop, its checkpoints, the DVCLive and TensorBoard sinks, summaries, lr-find."""
