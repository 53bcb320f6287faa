"""The shipped default prior: a class-conditional diffusion model of 8x8 grey digit glyphs.

Public training data only: the digits 0-9 rendered by the glyph simulator
(``pe_jax.apis.glyphs``) in every font it finds (matplotlib's faces plus Debian's handwriting
faces where installed), at scikit-learn's digits format (8x8, bright ink on dark, [0, 1]),
posed by ``DEFAULT_PRIORS`` (fitted to held-out digits only; the checkpoint's metadata records
the priors and their origin).
Class-conditional with classifier-free guidance (labels dropped 10 % of the time). A tiny
UNet (~0.65M parameters, a 2.6 MB checkpoint) that trains on 2 CPU cores in about 10-15
minutes.

Reproduce the shipped checkpoint ``pe_jax/assets/prior_digits8`` (with the Debian font packages
fonts-humor-sans fonts-dkg-handwriting fonts-bwht fonts-breip fonts-comic-neue
fonts-dancingscript installed, as when it was trained; the checkpoint's metadata lists the
fonts used)::

    pe-jax train-prior --config pe_jax/configs/prior_digits8.py --out outputs/prior_digits8
    cp -r outputs/prior_digits8/checkpoint pe_jax/assets/prior_digits8

An interrupted run continues with the same command plus ``--resume``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.name = "prior_digits8"
    config.seed = 0
    # Public data: glyphs of these characters (one class each), rendered fresh every step
    # (data_size = 0) or drawn from a fixed set of data_size glyphs.
    config.characters = "0123456789"
    config.resolution = 8
    config.channels = 1
    config.data_size = 0
    # UNet (pe_jax.models.unet.UNetConfig); conditional: one class per character.
    config.conditional = True
    config.base_width = 32
    config.width_multipliers = (1, 2)
    config.blocks_per_level = 1
    config.attention_resolutions = ()
    config.dropout = 0.0
    config.norm_groups = 8
    config.dtype = "float32"
    # Noise schedule of training.
    config.schedule = "cosine"
    config.schedule_steps = 1000
    # Optimisation (pe_jax.training.diffusion.TrainSettings).
    config.steps = 3000
    config.batch_size = 128
    config.learning_rate = 2e-3
    config.warmup_steps = 200
    config.weight_decay = 1e-4
    config.grad_clip = 1.0
    config.ema_decay = 0.999
    config.label_dropout = 0.1
    config.checkpoint_every = 500
    config.log_every = 50
    # Sample grids (DDIM) written every sample_every steps; the same sampling settings are
    # stored with the checkpoint as its defaults. Guidance 1 (plain conditional sampling)
    # came closest to real digits; scales 2 and 3 pushed samples away from them.
    config.sample_every = 1000
    config.sample_steps = 50
    config.guidance = 1.0
    return config
