"""PE on scikit-learn's 8x8 digits with the shipped diffusion prior as the public generator.

Like ``digits.py`` (same private data, privacy and PE settings) but ``random`` and
``variation`` come from the class-conditional diffusion model in
``pe_jax/assets/prior_digits8`` (trained on rendered glyphs only, by
``pe-jax train-prior --config pe_jax/configs/prior_digits8.py``): random samples are DDIM
samples from noise, variations are SDEdit re-runs of the last ``degree`` of the DDIM chain
(the SDEdit degrees are fractions of that chain: explore, then refine).

Run it with ``pe-jax run --config pe_jax/configs/digits_diffusion.py``;
``--set generator.prior=DIR`` uses another ``pe_jax.checkpoints`` folder trained on the digits
0-9 at 8x8.
"""

import ml_collections

from pe_jax.configs.digits import get_config as digits_config
from pe_jax.configs.sections import section


def get_config() -> ml_collections.ConfigDict:
    config = digits_config()
    config.name = "digits_diffusion"
    # "" is the shipped prior; its own glyph priors are in its checkpoint's metadata.
    config.generator = section("generator", name="diffusion", prior="", steps=25, guidance=1.0)
    config.pe.update(degree_start=0.6, degree_end=0.2)
    return config
