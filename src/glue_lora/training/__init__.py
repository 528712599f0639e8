"""Training with Lightning: the LightningModule, losses, optimizer groups, metrics, callbacks,
checkpoints and resumption, loggers, Hydra callbacks for runs and sweeps."""
