"""Private-PGM estimation and sampling through mbi: the post-processing MST and AIM share.

``estimate(domain, measurements)`` fits a graphical model to noisy marginal measurements by
mbi's mirror descent (Private-PGM, McKenna et al. 2019); ``sample_rows(model, rows, seed)``
draws integer rows from it in the domain's column order. Nothing here reads private data:
it sees only released measurements, so it costs no privacy. mbi's sampler uses NumPy's global
generator; ``sample_rows`` seeds it for the call and restores it after, so runs are
reproducible without disturbing the caller's state.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from pe_jax._checks import check_int


def mbi_module():
    """The mbi package, without its import-time warnings: float32 matters above 100k rows,
    and the compilation cache is the user's JAX setting, not ours to change."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="JAX is running in float32 mode")
        warnings.filterwarnings("ignore", message="JAX persistent compilation cache")
        import mbi
    return mbi


def mbi_domain(domain: dict[str, int]):
    """The ``mbi.Domain`` of a ``{attribute: size}`` domain, in its order."""
    return mbi_module().Domain(tuple(domain), tuple(domain.values()))


def estimate(domain: dict[str, int], measurements: Sequence, *, iters: int,
             warm_start=None):
    """A ``MarkovRandomField`` fitted to ``measurements`` by ``iters`` mirror-descent steps;
    ``warm_start`` continues from an earlier model (AIM's rounds)."""
    mbi = mbi_module()
    iters = check_int("iters", iters, 1)
    return mbi.estimation.MirrorDescent().estimate(
        mbi_domain(domain), list(measurements), iters=iters, warm_start=warm_start)


def sample_rows(model, domain: dict[str, int], rows: int | None, seed: int) -> np.ndarray:
    """``rows`` rows (None: the model's estimated total) drawn from ``model`` as int32
    ``(rows, A)`` in ``domain``'s column order, by mbi's randomised rounding."""
    if rows is not None:
        rows = check_int("rows", rows, 1)
    state = np.random.get_state()
    np.random.seed(check_int("seed", seed, 0, 2 ** 32 - 1))
    try:
        data = model.synthetic_data(rows)
    finally:
        np.random.set_state(state)
    return np.stack([np.asarray(data.data[a]) for a in domain], axis=1).astype(np.int32)


def project(model, clique: tuple[str, ...]) -> np.ndarray:
    """The model's marginal on ``clique`` as a flat float64 vector (mbi's datavector order)."""
    return np.asarray(model.project(clique).datavector(), np.float64)
