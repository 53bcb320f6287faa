"""Row embedders for tabular PE: one-hot codes, optionally weighted by attribute.

``OneHotEmbedder(domain, weights)`` maps each row to the concatenation of its attributes'
one-hot vectors, attribute ``a`` scaled by ``weights[a] / sqrt(2)``, so the squared L2
distance between two rows is the weighted Hamming distance ``sum of weights[a]**2 over the
attributes where they differ`` (plain Hamming distance with the default weights of 1). It is
an ordinary ``pe_jax.embeddings.BatchedEmbedder``: it reads rows in the "image" layout of
``pe_jax.tabular.generator.as_images`` (float32 codes ``(n, A, 1, 1)``), treats rows
independently, and runs inside the compiled PE step like any image embedder.
"""

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax.embeddings import BatchedEmbedder
from pe_jax.tabular.data import check_domain


def _check_weights(domain: dict[str, int],
                   weights: Mapping[str, float] | Sequence[float] | None) -> np.ndarray:
    if weights is None:
        return np.ones(len(domain), np.float32)
    if isinstance(weights, Mapping):
        unknown = [a for a in weights if a not in domain]
        if unknown:
            raise ValueError(f"weights name attributes outside the domain: {unknown}")
        weights = [weights.get(a, 1.0) for a in domain]
    weights = np.asarray(weights, np.float64)
    if weights.shape != (len(domain),) or not np.all(np.isfinite(weights)) or np.any(
            weights < 0):
        raise ValueError(f"weights must be {len(domain)} finite numbers >= 0, one per "
                         f"attribute (or a dict by attribute); got {weights.tolist()}")
    return weights.astype(np.float32)


class OneHotEmbedder(BatchedEmbedder):
    """Weighted one-hot features ``(n, sum of domain sizes)`` of integer rows.

    Args:
      domain: ``{attribute: number of values}`` in column order (the table's domain).
      weights: per-attribute weights (a sequence in column order, or a dict by attribute
        whose missing attributes weigh 1); all 1 when None. Weight 0 ignores an attribute.
    """

    def __init__(self, domain: dict[str, int],
                 weights: Mapping[str, float] | Sequence[float] | None = None, *,
                 batch_size: int = 4096, mesh: jax.sharding.Mesh | None = None):
        self.domain = check_domain(domain)
        self.weights = _check_weights(self.domain, weights)
        sizes = np.asarray(list(self.domain.values()))
        self.dim = int(sizes.sum())
        offsets = jnp.asarray(np.concatenate([[0], np.cumsum(sizes)[:-1]]), jnp.int32)
        scale = jnp.asarray(self.weights / np.sqrt(2.0), jnp.float32)
        dim = self.dim

        def features(_, images):
            codes = jnp.round(images[:, :, 0, 0]).astype(jnp.int32)
            hot = jax.nn.one_hot(codes + offsets, dim, dtype=jnp.float32)  # (n, A, dim)
            return jnp.einsum("nad,a->nd", hot, scale)

        super().__init__(features, batch_size=batch_size, mesh=mesh)

    def __call__(self, images: jax.Array) -> jax.Array:
        expected = (len(self.domain), 1, 1)
        if tuple(np.shape(images)[1:]) != expected:
            raise ValueError(f"images must be rows in the layout of as_images, shape "
                             f"(n, {len(self.domain)}, 1, 1); got shape {np.shape(images)}")
        return super().__call__(images)
