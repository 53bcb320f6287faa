"""Quality metrics of synthetic data: FID, precision/recall, downstream accuracy.

Each metric is a plain function of features or labelled images (``fid``, ``precision_recall``,
``downstream_accuracy``) and, through ``pe_jax.metrics.callbacks``, a PE callback that runs
every n iterations. Metrics compare synthetic data with *real* data: they are evaluation
outputs, not DP releases, so measure them against a held-out real set, not the private one.
"""
