"""The default privacy audit: ``pe-jax audit`` (this is its default config).

Vote-release audit: T = 4 releases with noise multiplier 2 (claimed mu = 1), 16,000 seeded runs
per neighbouring dataset, epsilon compared at delta = 1e-2 (a few thousand runs cannot see a
smaller delta, so a smaller one would leave the epsilon bound without power). One-run audit:
one PE pipeline run calibrated to (2, 1e-6)-DP over 4 iterations with 30,000 canaries (the mu
bound then flags every control, replace-one with the thinnest margin, about 10-20 %; the
epsilon bound's delta stays below 0.1 / m because it pays 2 m delta). All of it runs in about a minute on a CPU;
``experiments/audit_large.py`` runs the larger audits.

``pe-jax audit --config pe_jax/configs/audit.py --set vote_runs=20000``
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.name = "audit"
    config.seed = 0
    config.confidence = 0.95  # per Clopper-Pearson interval / one-run p-value
    # Vote-release audit.
    config.vote_noise_multiplier = 2.0
    config.vote_iterations = 4
    config.vote_runs = 16000
    config.vote_delta = 1e-2
    config.knn_k = 4
    # One-run audit of the whole pipeline.
    config.one_run_epsilon = 2.0
    config.one_run_delta = 1e-6
    config.one_run_iterations = 4
    config.one_run_canaries = 30000
    return config
