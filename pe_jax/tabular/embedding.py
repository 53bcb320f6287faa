"""Row embedders for tabular PE: one-hot codes, optionally weighted by attribute.

``OneHotEmbedder(domain, weights)`` maps each row to the concatenation of its attributes'
one-hot vectors, attribute ``a`` scaled by ``weights[a] / sqrt(2)``, so the squared L2
distance between two rows is the weighted Hamming distance ``sum of weights[a]**2 over the
attributes where they differ`` (plain Hamming distance with the default weights of 1). It is
an ordinary ``pe_jax.embeddings.BatchedEmbedder``: it reads rows in the "image" layout of
``pe_jax.tabular.generator.as_images`` (float32 codes ``(n, A, 1, 1)``), treats rows
independently, and runs inside the compiled PE step like any image embedder.

``ordinal`` names attributes whose codes are ordered (binned numbers such as age): they get a
thermometer code instead (``[code > j]`` for ``j < size - 1``, scaled by
``weight / sqrt(size - 1)``), so two values ``|x - y|`` apart are at squared distance
``weight**2 * |x - y| / (size - 1)``: near values are near, the extremes as far apart as two
different one-hot values.
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
      ordinal: attributes embedded by a thermometer code (see the module docstring).
    """

    def __init__(self, domain: dict[str, int],
                 weights: Mapping[str, float] | Sequence[float] | None = None, *,
                 ordinal: Sequence[str] = (), batch_size: int = 4096,
                 mesh: jax.sharding.Mesh | None = None):
        self.domain = check_domain(domain)
        self.weights = _check_weights(self.domain, weights)
        unknown = [a for a in ordinal if a not in self.domain]
        if unknown:
            raise ValueError(f"ordinal names attributes outside the domain: {unknown}")
        # One row of features per (attribute, value): each row's features are the sum of
        # its values' rows.
        blocks = []
        for a, (name, size) in enumerate(self.domain.items()):
            if name in ordinal and size > 1:
                block = np.tril(np.ones((size, size - 1)), -1) / np.sqrt(size - 1)
            else:
                block = np.eye(size) / np.sqrt(2.0)
            blocks.append(block * self.weights[a])
        table = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)),
                         np.float32)
        row = col = 0
        for block in blocks:
            table[row:row + block.shape[0], col:col + block.shape[1]] = block
            row, col = row + block.shape[0], col + block.shape[1]
        self.dim = table.shape[1]
        sizes = np.asarray(list(self.domain.values()))
        offsets = jnp.asarray(np.concatenate([[0], np.cumsum(sizes)[:-1]]), jnp.int32)
        table = jnp.asarray(table)

        def features(_, images):
            codes = jnp.round(images[:, :, 0, 0]).astype(jnp.int32)
            return table[codes + offsets].sum(axis=1)  # (n, dim)

        super().__init__(features, batch_size=batch_size, mesh=mesh)

    def __call__(self, images: jax.Array) -> jax.Array:
        expected = (len(self.domain), 1, 1)
        if tuple(np.shape(images)[1:]) != expected:
            raise ValueError(f"images must be rows in the layout of as_images, shape "
                             f"(n, {len(self.domain)}, 1, 1); got shape {np.shape(images)}")
        return super().__call__(images)
