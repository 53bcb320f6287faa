"""Improved precision and recall (Kynkaanniemi et al., 2019): k-NN estimates of two manifolds.

Each set's manifold is the union of balls around its points, the radius of a point being the
distance to its k-th nearest neighbour in the same set. Precision is the fraction of synthetic
points inside the real manifold (are samples realistic?); recall is the fraction of real
points inside the synthetic manifold (is the real variety covered?). Distances are computed in
JAX, one jit-compiled block of rows at a time against the whole other set, in float32 with
the highest matmul precision.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax._checks import check_int, require

BLOCK_ROWS = 512


@dataclasses.dataclass(frozen=True)
class PrecisionRecall:
    precision: float
    recall: float


def _squared_distances(rows: jax.Array, others: jax.Array) -> jax.Array:
    dot = jnp.matmul(rows, others.T, precision=jax.lax.Precision.HIGHEST)
    d2 = (rows * rows).sum(1)[:, None] + (others * others).sum(1)[None, :] - 2 * dot
    return jnp.maximum(d2, 0.0)


@functools.partial(jax.jit, static_argnames="k")
def _kth_neighbour_block(rows: jax.Array, points: jax.Array, k: int) -> jax.Array:
    # The k + 1 smallest distances include the row's distance to itself (0).
    return -jax.lax.top_k(-_squared_distances(rows, points), k + 1)[0][:, k]


@jax.jit
def _covered_block(rows: jax.Array, centres: jax.Array, radii2: jax.Array) -> jax.Array:
    return jnp.any(_squared_distances(rows, centres) <= radii2[None, :], axis=1)


def _by_blocks(fn, rows: jax.Array, *args) -> np.ndarray:
    n = rows.shape[0]
    size = min(BLOCK_ROWS, n)
    out = []
    for start in range(0, n, size):
        block = rows[start:start + size]
        pad = size - block.shape[0]
        block = jnp.pad(block, ((0, pad), (0, 0)))  # one compiled shape for every block
        out.append(np.asarray(fn(block, *args))[:size - pad])
    return np.concatenate(out)


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Squared distance from each row to its k-th nearest other row."""
    points = jnp.asarray(features, jnp.float32)
    return _by_blocks(functools.partial(_kth_neighbour_block, k=k), points, points)


def coverage(points: np.ndarray, centres: np.ndarray, radii2: np.ndarray) -> float:
    """Fraction of ``points`` inside at least one ball (centre, squared radius)."""
    covered = _by_blocks(_covered_block, jnp.asarray(points, jnp.float32),
                         jnp.asarray(centres, jnp.float32), jnp.asarray(radii2, jnp.float32))
    return float(covered.mean())


def precision_recall(real: np.ndarray, synthetic: np.ndarray, k: int = 3,
                     real_radii: np.ndarray | None = None) -> PrecisionRecall:
    """Precision and recall of ``synthetic`` against ``real`` features, ``(n, D)`` each.

    ``real_radii``: ``knn_radii(real, k)`` when already known (a reference set measured
    against many synthetic sets).
    """
    real, synthetic = np.asarray(real), np.asarray(synthetic)
    require(real.ndim == 2 and synthetic.ndim == 2 and real.shape[1] == synthetic.shape[1],
            "features", "two (n, D) arrays with the same D", (real.shape, synthetic.shape))
    k = check_int("k", k, 1, min(len(real), len(synthetic)) - 1)
    return PrecisionRecall(
        precision=coverage(synthetic, real, knn_radii(real, k) if real_radii is None
                           else real_radii),
        recall=coverage(real, synthetic, knn_radii(synthetic, k)),
    )
