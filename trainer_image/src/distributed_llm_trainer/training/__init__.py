"""Training: LightningModule, optimizer and schedule, budget, Trainer assembly, checkpoints, run directory."""
