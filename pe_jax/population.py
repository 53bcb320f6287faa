"""Choosing the next parents from a released vote histogram.

Selection only reads the released (noisy, thresholded) histogram, so it is post-processing
and costs no privacy. Two rules, as in the PE paper:

* ``sample``: draw parents independently with probability proportional to the counts;
* ``rank``: keep the parents with the largest counts (ties go to the lower index).

Fallback when every count is zero (all votes fell below the threshold): every candidate gets
the same weight, so ``sample`` draws uniformly and ``rank`` keeps the lowest indices. The
fallback is a deterministic function of the key and the histogram.

The next population is ``[parents if keep_selected] + variation_folds x variation(parents)``,
so each class of ``n`` samples selects ``n // (variation_folds + keep_selected)`` parents.
"""

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax._checks import check_int, require
from pe_jax.apis import Generator, Samples

SELECTION_METHODS = ("sample", "rank")


def select(key: jax.Array, counts: jax.Array, num: int, *, method: str = "sample") -> jax.Array:
    """Indices (into ``counts``) of ``num`` parents, chosen by ``method`` from the counts."""
    dtype = counts.dtype if hasattr(counts, "dtype") else np.asarray(counts).dtype
    require(jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating), "counts",
            "a real numeric array", dtype)
    counts = jnp.asarray(counts, jnp.float32)
    require(isinstance(counts, jax.core.Tracer)
            or bool(jnp.all(jnp.isfinite(counts) & (counts >= 0))), "counts",
            "finite and >= 0 (a released, thresholded histogram)", "negative or non-finite entries")
    require(counts.ndim == 1 and counts.shape[0] > 0, "counts", "a non-empty 1-D array",
            f"shape {counts.shape}")
    require(method in SELECTION_METHODS, "method", f"one of {SELECTION_METHODS}", method)
    check_int("num", num, 1, counts.shape[0] if method == "rank" else None)
    weights = jnp.where(jnp.sum(counts) > 0, counts, jnp.ones_like(counts))
    if method == "rank":
        return jax.lax.top_k(weights, num)[1]
    return jax.random.choice(key, counts.shape[0], (num,), replace=True, p=weights / weights.sum())


def parents_per_class(samples_per_class: int, variation_folds: int, keep_selected: bool) -> int:
    """How many parents a class of ``samples_per_class`` samples selects each iteration."""
    check_int("variation_folds", variation_folds, 1)
    group = variation_folds + int(keep_selected)
    require(samples_per_class % group == 0, "samples per class",
            f"a multiple of variation_folds + keep_selected ({group})", samples_per_class)
    return samples_per_class // group


def class_members(labels: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """For each class, the indices of the population entries with that (public) label."""
    return [np.flatnonzero(labels == c) for c in range(num_classes)]


def next_population(
    key: jax.Array,
    generator: Generator,
    samples: Samples,
    labels: np.ndarray,
    counts: np.ndarray,
    *,
    num_classes: int,
    degree: float,
    method: str = "sample",
    variation_folds: int = 1,
    keep_selected: bool = False,
) -> tuple[Samples, np.ndarray]:
    """Selects parents per class from ``counts`` and builds the next population from them.

    ``labels`` are the public class labels of the population (all zeros when unconditional).
    Returns the new samples and their labels; class sizes are preserved.
    """
    select_key, variation_key = jax.random.split(key)
    parents = []
    for c, members in enumerate(class_members(labels, num_classes)):
        num = parents_per_class(len(members), variation_folds, keep_selected)
        chosen = select(jax.random.fold_in(select_key, c), counts[members], num, method=method)
        parents.append(members[np.asarray(chosen)])
    parent_index = np.concatenate(parents)
    selected = jax.tree.map(lambda leaf: leaf[parent_index], samples)
    groups = [selected] if keep_selected else []
    groups += [
        generator.variation(jax.random.fold_in(variation_key, fold), selected, degree)
        for fold in range(variation_folds)
    ]
    new_samples = jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *groups)
    return new_samples, np.tile(labels[parent_index], len(groups))
