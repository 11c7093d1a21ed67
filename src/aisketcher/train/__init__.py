"""Loss, checkpoints and the training loop."""
