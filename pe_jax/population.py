"""Choosing the next parents from a released vote histogram, and the population's layout.

Selection only reads the released (noisy, thresholded) histogram, so it is post-processing
and costs no privacy. Two rules, as in the PE paper:

* ``sample``: draw parents independently with probability proportional to the counts;
* ``rank``: keep the parents with the largest counts (ties go to the lower index).

Fallback when every count of a class is zero (all votes fell below the threshold): every
candidate of the class gets the same weight, so ``sample`` draws uniformly and ``rank``
keeps the lowest indices. The fallback is a deterministic function of the key and the
histogram.

The population has a fixed layout (:class:`PopulationLayout`): ``groups`` blocks (the kept
samples if ``keep_selected``, then one block per variation fold), each holding every class's
parents in class order, then a block of fresh ``random`` samples (``random_fraction`` of each
class, none by default). A class of ``n`` samples with ``f`` fresh ones selects
``(n - f) // groups`` parents per iteration, so the labels never change and every array keeps
its shape: the whole :func:`next_population` runs inside ``jax.jit``.

Levers against the population collapsing onto a few samples (all public: they read only the
released histogram and the public generator):

* ``keep="top"``: the kept block holds each class's top-voted candidates, distinct and
  unchanged, instead of the parents drawn for variation (which ``sample`` draws with
  replacement, so the kept block repeats the few popular ones);
* ``random_fraction``: fresh ``random`` samples in every generation, so styles that the
  population lost can come back;
* :func:`spread`: after the run, small variations of the final population (post-processing
  of released samples, no privacy cost), so a small population can vote with more votes per
  candidate and still give a large training set.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax._checks import check_int, require
from pe_jax.apis import Generator, Samples
from pe_jax.voting import class_index

SELECTION_METHODS = ("sample", "rank")
KEEP_RULES = ("parents", "top")


def select(key: jax.Array, counts: jax.Array, num: int, *, method: str = "sample",
           valid: jax.Array | None = None) -> jax.Array:
    """Indices (into ``counts``) of ``num`` parents, chosen by ``method`` from the counts.

    ``valid`` (bool, like ``counts``) marks the candidates; others are never chosen (all
    are candidates by default). Traceable: value checks run only on concrete counts.
    """
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
    valid = jnp.ones(counts.shape, bool) if valid is None else jnp.asarray(valid, bool)
    counts = jnp.where(valid, counts, 0.0)
    weights = jnp.where(jnp.sum(counts) > 0, counts, valid.astype(jnp.float32))
    if method == "rank":
        return jax.lax.top_k(jnp.where(valid, weights, -1.0), num)[1]
    return jax.random.choice(key, counts.shape[0], (num,), replace=True, p=weights / weights.sum())


def parents_per_class(samples_per_class: int, variation_folds: int, keep_selected: bool,
                      fresh: int = 0) -> int:
    """How many parents a class of ``samples_per_class`` samples, ``fresh`` of them fresh
    ``random`` samples, selects each iteration."""
    check_int("variation_folds", variation_folds, 1)
    group = variation_folds + int(keep_selected)
    require(samples_per_class % group == 0 if fresh == 0 else
            (samples_per_class - fresh) % group == 0 and samples_per_class > fresh,
            "samples per class" + (f" minus its {fresh} fresh random samples" if fresh else ""),
            f"a positive multiple of variation_folds + keep_selected ({group})",
            samples_per_class - fresh)
    return (samples_per_class - fresh) // group


def fresh_per_class(samples_per_class: int, random_fraction: float) -> int:
    """Fresh ``random`` samples in each generation of a class: ``round(fraction * n)``."""
    require(isinstance(random_fraction, (int, float)) and 0.0 <= random_fraction < 1.0,
            "random_fraction", "a number in [0, 1)", random_fraction)
    return round(random_fraction * samples_per_class)


@dataclasses.dataclass(frozen=True)
class PopulationLayout:
    """Where each class's samples sit in the population (public, fixed for a run).

    The population is ``groups = keep_selected + variation_folds`` blocks, each holding
    ``parents[c]`` samples of class 0, then of class 1, and so on, followed by ``fresh[c]``
    fresh ``random`` samples of each class in class order (``random_fraction`` of the class).
    """

    samples_per_class: tuple[int, ...]
    variation_folds: int = 1
    keep_selected: bool = False
    random_fraction: float = 0.0

    def __post_init__(self) -> None:
        require(len(self.samples_per_class) >= 1
                and all(isinstance(n, int) and n >= 1 for n in self.samples_per_class),
                "samples_per_class", "one or more ints >= 1", self.samples_per_class)
        require(isinstance(self.keep_selected, bool), "keep_selected", "a bool",
                self.keep_selected)
        for n, fresh in zip(self.samples_per_class, self.fresh):
            parents_per_class(n, self.variation_folds, self.keep_selected, fresh)

    @property
    def num_classes(self) -> int:
        return len(self.samples_per_class)

    @property
    def groups(self) -> int:
        return self.variation_folds + int(self.keep_selected)

    @property
    def fresh(self) -> tuple[int, ...]:
        """Fresh ``random`` samples of each class in every generation."""
        return tuple(fresh_per_class(n, self.random_fraction) for n in self.samples_per_class)

    @property
    def parents(self) -> tuple[int, ...]:
        """Parents each class selects per iteration."""
        return tuple((n - f) // self.groups for n, f in zip(self.samples_per_class, self.fresh))

    @functools.cached_property
    def fresh_labels(self) -> np.ndarray:
        """``(sum(fresh),)`` int32 class of every fresh slot (the population's last block)."""
        return np.repeat(np.arange(self.num_classes, dtype=np.int32), self.fresh)

    @functools.cached_property
    def labels(self) -> np.ndarray:
        """``(N,)`` int32 class of every population slot."""
        block = np.repeat(np.arange(self.num_classes, dtype=np.int32), self.parents)
        return np.concatenate([np.tile(block, self.groups), self.fresh_labels])

    @functools.cached_property
    def members(self) -> np.ndarray:
        """``(C, S)`` int32: each class's slots, ascending, -1 padded (``voting.class_index``)."""
        return class_index(self.labels, self.num_classes)


def select_parents(key: jax.Array, weights: jax.Array, layout: PopulationLayout, *,
                   method: str = "sample") -> jax.Array:
    """Slots of the next parents, class by class in the layout's order: ``(sum(parents),)``.

    Class ``c`` chooses ``layout.parents[c]`` of its own slots from ``weights`` (the
    released, thresholded histogram) with key ``fold_in(key, c)``.
    """
    members = jnp.asarray(layout.members)
    valid = members >= 0
    most = max(layout.parents)
    per_class = jax.vmap(lambda k, w, v: select(k, w, most, method=method, valid=v))
    keys = jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(layout.num_classes))
    chosen = per_class(keys, weights[jnp.maximum(members, 0)], valid)
    slots = jnp.take_along_axis(members, chosen, axis=1)
    return jnp.concatenate([slots[c, :n] for c, n in enumerate(layout.parents)])


def next_population(key: jax.Array, generator: Generator, samples: Samples,
                    weights: jax.Array, layout: PopulationLayout, *, degree: float | jax.Array,
                    method: str = "sample", keep: str = "parents",
                    conditional: bool = True) -> Samples:
    """The next population in the same layout: the kept samples (if ``keep_selected``), the
    variations of the selected parents, then the fresh ``random`` samples (if any).

    ``weights`` is the released, thresholded histogram; ``degree`` may be traced. ``keep``
    says what the kept block holds: the parents chosen by ``method`` (``"parents"``) or each
    class's top-voted candidates (``"top"``, as ``rank`` chooses them). Fresh samples are
    drawn with their classes as labels, or without labels when not ``conditional``.
    """
    require(keep in KEEP_RULES, "keep", f"one of {KEEP_RULES}", keep)
    select_key, variation_key = jax.random.split(key)
    parents = select_parents(select_key, weights, layout, method=method)
    selected = jax.tree.map(lambda leaf: leaf[parents], samples)
    groups = []
    if layout.keep_selected:
        kept = parents if keep == "parents" else select_parents(select_key, weights, layout,
                                                                  method="rank")
        groups.append(jax.tree.map(lambda leaf: leaf[kept], samples))
    groups += [generator.variation(jax.random.fold_in(variation_key, fold), selected, degree)
               for fold in range(layout.variation_folds)]
    if len(layout.fresh_labels):  # keyed after the folds' keys, so none is reused
        labels = jnp.asarray(layout.fresh_labels) if conditional else None
        groups.append(generator.random(jax.random.fold_in(variation_key, layout.variation_folds),
                                       len(layout.fresh_labels), labels))
    return jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *groups)


def spread(key: jax.Array, generator: Generator, samples: Samples, labels: np.ndarray, *,
           copies: int, degree: float) -> tuple[Samples, np.ndarray]:
    """The samples followed by ``copies`` variations of each at ``degree``, and their labels.

    Post-processing of a released population (it reads no private data and releases
    nothing), so it costs no privacy: a run can vote over few candidates, which gives each
    candidate more votes against the same noise, and still hand a large set to training.
    """
    check_int("copies", copies, 0)
    require(0.0 <= degree <= 1.0, "degree", "a number in [0, 1]", degree)
    variations = [generator.variation(jax.random.fold_in(key, copy), samples, degree)
                  for copy in range(copies)]
    grown = jax.tree.map(lambda *leaves: jnp.concatenate(leaves), samples, *variations)
    return grown, np.tile(np.asarray(labels), copies + 1)
