"""The embedded default: PE on scikit-learn's 8x8 handwritten digits with the glyph simulator.

Private data: 1,348 of the 1,797 digits of ``sklearn.datasets.load_digits``; the other 449
(``heldout``, a fixed random quarter) are the real reference set of the quality metrics
(FID, precision/recall, downstream accuracy), written to ``metrics/`` every 5 iterations.
Public generator: rendered characters in the fonts that matplotlib ships (plus handwriting
faces where installed).
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
    # Quality metrics (not covered by DP: they are measured on real data held out from PE).
    config.heldout = 0.25  # fraction of the digits set aside as the metrics' reference set
    config.metrics = "fid,precision_recall,accuracy"  # "" for none
    config.metrics_every = 5
    config.metrics_embedding = "encoder"  # feature space of FID and precision/recall
    config.encoder_checkpoint = ""  # "" is the shipped glyph encoder
    config.inception_weights = ""  # a converted FID Inception checkpoint (embedding=inception)
    config.tensorboard = False
    return config
