"""The tabular default: synthetic Adult rows by PE, MST or AIM (``pe-jax tabular``).

Private data: the discretised UCI Adult table shipped with pe_jax, minus the fixed held-out
20 % (``heldout``; the hash rule of ``pe_jax.data.heldout_mask``), on which the metrics are
measured. ``data`` may instead name an integer-coded CSV, with its domain file in ``domain``.
``private_rows`` > 0 keeps only the first that many private rows (quick runs). One section per
method; ``method`` picks one (``--method`` overrides it).

``pe-jax tabular --method mst --config pe_jax/configs/adult.py --set epsilon=10``
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.name = "adult"
    config.method = "mst"  # pe | mst | aim
    config.data = "adult"  # "adult" (embedded) or the path of an integer-coded CSV
    config.domain = ""  # the domain JSON of a CSV ``data``
    config.heldout = 0.2  # share of rows held out (never private) for the metrics
    config.private_rows = 0  # 0: every private row
    config.target = "income>50K"  # downstream classifier's label; "" for none
    config.epsilon = 1.0
    config.delta = 1e-9
    config.noise_seed = -1  # -1: CSPRNG noise; a seed gives reproducible, NOT private noise
    config.seed = 0  # public randomness: PE's generator, sampling rows from a fitted model
    config.synthetic_rows = 0  # MST/AIM rows to draw; 0: the model's noisy total

    config.mst = ml_collections.ConfigDict()
    config.mst.iters = 3000  # mirror-descent steps of the final estimate

    config.aim = ml_collections.ConfigDict()
    config.aim.rounds = 0  # planned rounds; 0: 16 per attribute (the paper's default)
    config.aim.max_model_size = 80.0  # MB of the model's junction tree
    config.aim.iters = 1000  # mirror-descent steps per round
    config.aim.final_iters = 2500

    config.pe = ml_collections.ConfigDict()
    # PE's defaults come from the sweep on Adult at epsilon 1 (experiments/RESULTS.md): a large
    # population and few iterations keep the marginals; more iterations fit the joint better
    # but the population drifts and loses diversity.
    config.pe.iterations = 5
    config.pe.samples = 16000  # synthetic population
    config.pe.degree_start = 0.3  # share of cells re-drawn, decaying over the run
    config.pe.degree_end = 0.1
    config.pe.threshold = 0.0
    config.pe.keep_selected = False
    # Share of the budget (of mu^2, mu-GDP) spent on noisy 1-way marginals that the generator
    # draws new cells from; 0: a uniform prior over each attribute's domain.
    config.pe.marginal_share = 0.2
    # Comma-separated attributes with ordered codes: mutated to nearby values and embedded by
    # a thermometer code ("" for none), e.g. Adult's binned numbers:
    # "age,fnlwgt,education-num,capital-gain,capital-loss,hours-per-week".
    config.pe.ordinal = ""
    return config
