"""Voting metrics: how a private row scores a synthetic row (lower = nearer).

A metric is one function ``score(x, y) -> (Bp, Bs)`` of a float32 private block
``x (Bp, D)`` and synthetic block ``y (Bs, D)``, registered with
:func:`register_metric`.  Terms that are constant per private row may be dropped
(l2 drops ``||x||^2``).  The built-in metrics are :class:`LinearScore` instances,
the form the bfloat16 screen (:mod:`pe_jax.voting.bf16_screen`) can rank; a
registered plain function is always scored in float32.

Every score must treat rows independently: row ``i`` of the output depends only
on ``x[i]`` and ``y``.  The voting kernel relies on that, and on giving every
block the same compiled shape, for a private row's votes not to depend on any
other private row.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["METRICS", "LinearScore", "ScoreFn", "register_metric"]

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]

_SCORES: dict[str, ScoreFn] = {}
METRICS: Mapping[str, ScoreFn] = types.MappingProxyType(_SCORES)
"""Read-only view of the metric registry: name -> score function."""


def register_metric(name: str) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator registering ``score(x (Bp,D) f32, y (Bs,D) f32) -> (Bp,Bs)``.

    Lower scores are nearer.  The function must be jit-traceable and treat rows
    independently (row i of the output depends only on ``x[i]`` and ``y``).
    Registering an existing name is a ``ValueError``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"metric name must be a non-empty string, got {name!r}")
    if name in _SCORES:
        raise ValueError(f"metric {name!r} is already registered")

    def decorate(fn: ScoreFn) -> ScoreFn:
        _SCORES[name] = fn
        return fn

    return decorate


def dot(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x @ y.T`` in float32 at full precision (no TF32/bf16 passes)."""
    return lax.dot_general(
        x,
        y,
        (((1,), (1,)), ((), ())),
        precision=lax.Precision.HIGHEST,
        preferred_element_type=jnp.float32,
    )


@dataclasses.dataclass(frozen=True)
class LinearScore:
    """A score ``offset - scale * (x . z)`` of prepared synthetic rows ``z``: every built-in metric.

    ``z`` is ``y``, or ``y / ||y||`` with ``normalise`` (zero rows stay zero, similarity
    0 with everything, never NaN); ``offset`` is ``||z||^2`` with ``squared_norm_offset``,
    else 0.  ``translation_invariant`` says the metric's ranking does not change when
    every row is shifted by the same vector (true of l2 only): the kernel then scores
    rows centred on the synthetic mean, which keeps the ``||z||^2 - 2 x.z`` expansion
    from cancelling on features with a large common offset.  Called as ``score(x, y)``
    it scores like any registered metric function.
    """

    scale: float
    normalise: bool = False
    squared_norm_offset: bool = False
    translation_invariant: bool = False

    def prepare(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Float32 ``z (Bs, D)`` and ``offset (Bs,)`` of synthetic rows ``y``."""
        z = y.astype(jnp.float32)
        if self.normalise:
            norm = jnp.sqrt(jnp.sum(z * z, axis=1, keepdims=True))
            z = z / jnp.maximum(norm, jnp.finfo(jnp.float32).tiny)
        if not self.squared_norm_offset:
            return z, jnp.zeros(z.shape[:1], z.dtype)
        return z, jnp.sum(z * z, axis=1)

    def scores(self, x: jax.Array, z: jax.Array, offset: jax.Array, dot=dot) -> jax.Array:
        """Float32 ``(Bp, Bs)`` scores of private rows ``x`` against prepared rows.

        ``dot(x, z) -> (Bp, Bs)`` is the float32 matmul, or the screen's on its operands.
        """
        return offset[None, :] - self.scale * dot(x, z)

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return self.scores(x, *self.prepare(y))


# Squared L2 distance minus the per-row constant ||x||^2.
register_metric("l2")(LinearScore(scale=2.0, squared_norm_offset=True, translation_invariant=True))
# Negative cosine similarity up to the positive per-row factor 1/||x||.
register_metric("cosine")(LinearScore(scale=1.0, normalise=True))
# Negative inner product (maximum inner product search).
register_metric("inner_product")(LinearScore(scale=1.0))
