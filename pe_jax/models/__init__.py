"""Flax NNX modules: the diffusion UNet, image encoders, Inception-v3 and the classifier."""
