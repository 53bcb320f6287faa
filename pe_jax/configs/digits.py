"""The embedded default: PE on scikit-learn's 8x8 handwritten digits with the glyph simulator.

Private data: all 1,797 digits of ``sklearn.datasets.load_digits``. Public generator: rendered
characters in the fonts that matplotlib ships (plus handwriting faces where installed).
Class-conditional, 100 synthetic samples per digit, (4, 1e-5)-DP over 10 iterations.

Run it with ``pe-jax run`` (this is the default config) or
``pe-jax run --config pe_jax/configs/digits.py --set epsilon=1.0``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.name = "digits"
    config.seed = 0
    config.data = "sklearn_digits"
    config.generator = "glyphs"
    config.embedding = "pixels"
    # Privacy: the noise multiplier is calibrated so that T releases spend at most epsilon.
    config.epsilon = 4.0
    config.delta = 1e-5
    # PE.
    config.iterations = 10
    config.samples_per_class = 100
    config.k = 1
    config.metric = "l2"
    config.threshold = 2.0
    config.selection = "sample"
    config.variation_folds = 1
    config.keep_selected = False
    config.lookahead = 0
    config.degree_start = 0.6
    config.degree_end = 0.15
    config.degree_schedule = "geometric"
    return config
