"""Training runs of the two tasks: spec, epoch loop, losses, checkpoints and resume."""
