"""The embedded default: PE on scikit-learn's 8x8 digits with the shipped diffusion prior.

Sections (``pe_jax.configs.sections``): ``data`` is ``sklearn_digits``: 1,335 of the 1,797
digits of ``sklearn.datasets.load_digits`` are private; the other 462 (``data.heldout = 0.25``:
row i is held out iff a sha256 hash of its index and a fixed salt falls in the lowest quarter,
``pe_jax.data.heldout_mask``; no run setting moves them) are the real reference set of the
quality metrics (FID, precision/recall, downstream accuracy), written to ``metrics/`` every 5
iterations; those metrics are not noised and lie outside the guarantee. ``generator`` is the
class-conditional diffusion model in ``pe_jax/assets/prior_digits8`` (trained on rendered
glyphs only, by ``pe-jax train-prior --config pe_jax/configs/prior_digits8.py``): ``random``
draws DDIM samples from noise, ``variation`` re-runs the last ``degree`` of the DDIM chain
(SDEdit; the degrees are fractions of that chain: explore, then refine). ``embedding``: the
pixels. ``pe``: class-conditional, 100 synthetic samples per digit, 10 iterations, threshold
``H = 1 sigma``. ``privacy``: (4, 1e-5)-DP.

Nothing here was chosen on the private rows. The generator and ``pe.threshold_sigmas = 1``
were chosen on the held-out digits by ``experiments/sweep_quality.py`` (PE votes with one half
of them and is measured on the other; mean downstream accuracy)::

    generator                      epsilon 1   epsilon 10
    diffusion prior                0.724       0.803
    diffusion + threshold_sigmas=1 0.732       0.820   <- this config
    glyphs (digits_glyphs.py)      0.573       0.619
    glyphs + threshold_sigmas=1    0.609       0.635

The degree schedule is the glyph sweep's (``digits_glyphs.py``) with a later end, 0.2, for
the diffusion chain. The glyph simulator, faster and without a neural network, is
``pe_jax/configs/digits_glyphs.py``.

Run it with ``pe-jax run`` (this is the default config) or
``pe-jax run --set privacy.epsilon=1.0``; ``--set generator.prior=DIR`` uses another
``pe_jax.checkpoints`` folder trained on the digits 0-9 at 8x8.
"""

import ml_collections

from pe_jax.configs.sections import run_config


def get_config() -> ml_collections.ConfigDict:
    return run_config(
        "digits",
        data={"source": "sklearn_digits"},
        # "" is the shipped prior; its own glyph priors are in its checkpoint's metadata.
        generator={"name": "diffusion", "prior": "", "steps": 25, "guidance": 1.0},
        embedding={"name": "pixels"},
        # chosen on held-out digits (see above)
        pe={"threshold": 0.0, "threshold_sigmas": 1.0, "degree_start": 0.6, "degree_end": 0.2},
        metrics={"names": "fid,precision_recall,accuracy", "every": 5, "embedding": "encoder"},
    )
