"""Training: the SFT config, examples and batches, the A/B sampler, the loop, its state and checkpoints, the verifier fit."""
