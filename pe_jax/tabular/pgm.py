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
    """The model's marginal on ``clique`` as a flat float64 vector (mbi's datavector order).

    Variable elimination in NumPy over the model's log-potentials: the same marginal as mbi's
    ``model.project``, whose jitted elimination compiles anew for every clique and every model
    (about 0.5 s each on a CPU; AIM asks for ~100 cliques per round, each round a new model).
    """
    clique = tuple(clique)
    domain = model.domain
    factors = [(tuple(table.domain.attributes), np.asarray(table.values, np.float64))
               for table in model.potentials.tables.values()]
    hidden = [a for a in domain.attributes if a not in clique]
    order, _ = mbi_module().junction_tree.greedy_order(
        domain, [attrs for attrs, _ in factors] + [clique], elim=hidden)
    for attr in order:
        joined = [f for f in factors if attr in f[0]]
        factors = [f for f in factors if attr not in f[0]]
        attrs, values = _join(joined)
        axis = attrs.index(attr)
        top = values.max(axis=axis, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        summed = np.log(np.exp(values - top).sum(axis=axis)) + np.squeeze(top, axis)
        factors.append((attrs[:axis] + attrs[axis + 1:], summed))
    attrs, values = _join(factors + [(clique, np.zeros([domain[a] for a in clique]))])
    values = np.exp(values - values.max()).transpose([attrs.index(a) for a in clique])
    return (values * (float(model.total) / values.sum())).ravel()


def _join(factors: list[tuple[tuple[str, ...], np.ndarray]]
          ) -> tuple[tuple[str, ...], np.ndarray]:
    """The sum of log-factors, over the union of their attributes (first-seen order)."""
    attrs = tuple(dict.fromkeys(a for names, _ in factors for a in names))
    total = np.zeros(())
    for names, values in factors:
        ordered = sorted(range(len(names)), key=lambda i: attrs.index(names[i]))
        shape = [1] * len(attrs)
        for i in ordered:
            shape[attrs.index(names[i])] = values.shape[i]
        total = total + values.transpose(ordered).reshape(shape)
    return attrs, total
