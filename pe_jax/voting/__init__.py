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

Kernels are plug-ins (``kernels``: the :class:`VoteKernel` interface, its contract and the
:data:`KERNELS` registry): ``"exact"`` (the kernel above, the default), ``"approx"``
(``jax.lax.approx_min_k``, module ``approx``) and ``"pallas_l2"`` (a fused Pallas distance +
argmin prototype, module ``pallas_argmin``); ``vote(..., kernel=name)`` picks one.
"""

from pe_jax.voting import approx as approx, pallas_argmin as pallas_argmin  # register kernels
from pe_jax.voting.histogram import DEFAULT_TILES, nn_histogram, prepare_private, vote
from pe_jax.voting.kernels import KERNELS, VoteKernel, block_kernel, get_kernel, register_kernel
from pe_jax.voting.layout import MAX_MAGNITUDE, PrivateBlocks, class_index
from pe_jax.voting.metrics import METRICS, LinearScore, register_metric

__all__ = [
    "DEFAULT_TILES",
    "KERNELS",
    "MAX_MAGNITUDE",
    "METRICS",
    "LinearScore",
    "PrivateBlocks",
    "VoteKernel",
    "block_kernel",
    "class_index",
    "get_kernel",
    "nn_histogram",
    "prepare_private",
    "register_kernel",
    "register_metric",
    "vote",
]
