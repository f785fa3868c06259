"""The training app: config, build, loop, inference, checkpoint, logging, optim, distributed, trainer."""
