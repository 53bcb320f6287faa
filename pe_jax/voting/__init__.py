"""Nearest-neighbour vote histograms: the only place PE touches private data.

In every Private Evolution iteration each private embedding votes for its ``k`` nearest
synthetic embeddings (of its own class), and the release weighs each vote ``1/sqrt(k)``, so
one row's votes have L2 norm exactly 1: the histogram has add/remove L2 sensitivity 1, and
the discrete Gaussian noise of ``pe_jax.privacy`` is calibrated to that.  This package
computes the clean integer counts; noise is added elsewhere.

The sensitivity holds only if a row's votes depend on nothing but that row and the
synthetic set.  The kernel makes that true by construction: private rows are laid out in
equal single-class blocks (:mod:`~pe_jax.voting.layout`), and every float32 vote is scored
at one site on a block of one fixed shape (:mod:`~pe_jax.voting.kernel`).

Modules: ``metrics`` (the score functions and their registry), ``layout`` (private blocks,
synthetic class table), ``synthetic`` (per-class tiles, centring), ``nearest`` (the search
within a block), ``bf16_screen`` (the bfloat16 pre-ranking that never changes a vote),
``kernel`` (the compiled, sharded loop) and ``histogram`` (the entry points).
"""

from pe_jax.voting.histogram import DEFAULT_TILES, nn_histogram, prepare_private, vote
from pe_jax.voting.layout import MAX_MAGNITUDE, PrivateBlocks, class_index
from pe_jax.voting.metrics import METRICS, LinearScore, register_metric

__all__ = [
    "DEFAULT_TILES",
    "MAX_MAGNITUDE",
    "METRICS",
    "LinearScore",
    "PrivateBlocks",
    "class_index",
    "nn_histogram",
    "prepare_private",
    "register_metric",
    "vote",
]
