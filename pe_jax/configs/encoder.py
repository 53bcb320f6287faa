"""Training the shipped glyph encoder (``pe_jax/assets/encoder``) on rendered glyphs only.

Run it with ``pe-jax train-encoder --out checkpoints/encoder`` (this is the command's default
config); the shipped checkpoint was written by
``pe-jax train-encoder --config pe_jax/configs/encoder.py --out pe_jax/assets/encoder``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.name = "encoder"
    config.seed = 0
    # Public data: glyphs of these characters at this resolution (the digits default's).
    config.characters = "0123456789"
    config.resolution = 8
    # Model: ConvNet with one conv + pool per entry of channels; hidden is the embedding size.
    config.channels = (32, 64)
    config.hidden = 64
    # Training: Adam; loss = character cross-entropy + pose_weight * pose regression MSE.
    config.steps = 1500
    config.batch_size = 256
    config.learning_rate = 2e-3
    config.pose_weight = 0.5
    return config
