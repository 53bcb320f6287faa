"""Tabular PE's public generator: integer rows drawn from a public prior, mutated cell by cell.

Samples are int32 arrays ``(n, A)``, one code per attribute, inside a public domain.

* ``random`` draws every cell independently from the attribute's public prior: uniform over
  the domain unless ``prior`` (one probability vector per attribute, from public knowledge,
  never from the private rows) is given.
* ``variation(key, rows, degree)`` re-draws a fraction ``degree`` of the cells of each row
  from the same prior, as in Tab-PE's mutation: each row re-draws ``floor(degree * A + u)``
  cells (``u`` uniform in [0, 1), so the expected share is exactly ``degree``), chosen
  uniformly among its attributes. ``degree = 0`` keeps every row; ``degree = 1`` re-draws every
  cell (a fresh ``random`` row). PE lowers the degree over the run (``evolve.degree_schedule``).
  Attributes named ``ordinal`` (ordered codes, such as binned numbers) are re-drawn nearby
  instead: the current code plus a uniform step in ``[-w, w]`` (``w = max(1, round(
  ordinal_width * size))``), clipped to the domain.

The existing PE driver (``pe_jax.evolve.run``) embeds ``generator.images(samples)`` and checks
the private "images" against ``PEConfig.image_range``; tables meet both through one adapter:
``as_images(codes)`` is the codes as float32 ``(n, A, 1, 1)`` (exact: codes are small
integers), ``image_range(domain)`` is ``(0, largest size - 1)``, and
``pe_jax.tabular.embedding.OneHotEmbedder`` reads the codes back from that layout. The vote,
release, ledger and population code see nothing tabular.

Everything is pure JAX with static shapes, so ``random`` and ``variation`` run inside the
compiled PE step.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax.tabular.data import check_domain


def as_images(codes) -> jax.Array:
    """Integer rows ``(n, A)`` as the float32 "images" ``(n, A, 1, 1)`` PE embeds and checks."""
    return jnp.asarray(codes).astype(jnp.float32)[:, :, None, None]


def image_range(domain: dict[str, int]) -> tuple[float, float]:
    """``PEConfig.image_range`` for a table with this domain: every code lies inside it."""
    return 0.0, float(max(max(check_domain(domain).values()) - 1, 1))


def _prior_logits(sizes: tuple[int, ...], prior: Sequence[Sequence[float]] | None) -> np.ndarray:
    """Log-probabilities ``(A, max size)``, ``-inf`` beyond each attribute's domain."""
    logits = np.full((len(sizes), max(sizes)), -np.inf, np.float32)
    if prior is None:
        for a, size in enumerate(sizes):
            logits[a, :size] = 0.0
        return logits
    if len(prior) != len(sizes):
        raise ValueError(f"prior must hold one probability vector per attribute "
                         f"({len(sizes)}); got {len(prior)}")
    for a, (size, p) in enumerate(zip(sizes, prior)):
        p = np.asarray(p, np.float64)
        if (p.shape != (size,) or not np.all(np.isfinite(p)) or np.any(p < 0)
                or not p.sum() > 0):
            raise ValueError(f"prior[{a}] must be {size} finite non-negative weights with a "
                             f"positive sum; got shape {p.shape}")
        with np.errstate(divide="ignore"):
            logits[a, :size] = np.log(p / p.sum())
    return logits


class TabularGenerator:
    """Random and variation APIs over integer rows of a public domain (see the module doc).

    Args:
      domain: ``{attribute: number of values}``, in column order.
      prior: optional public prior, one probability vector (any positive scale) per
        attribute; uniform over each domain when None.
      label_attribute: for class-conditional runs, the attribute that holds the class: the
        labels PE passes to ``random`` are written into it and ``variation`` never changes
        it. Without it, ``random`` refuses labels.
      ordinal: attributes that ``variation`` re-draws near their current code.
      ordinal_width: the largest step of such a re-draw, as a share of the domain size.
    """

    def __init__(self, domain: dict[str, int], prior: Sequence[Sequence[float]] | None = None,
                 label_attribute: str | None = None, ordinal: Sequence[str] = (),
                 ordinal_width: float = 0.1):
        self.domain = check_domain(domain)
        self.sizes = tuple(self.domain.values())
        self.logits = jnp.asarray(_prior_logits(self.sizes, prior))
        unknown = [a for a in ordinal if a not in self.domain]
        if unknown:
            raise ValueError(f"ordinal names attributes outside the domain: {unknown}")
        if not 0 < ordinal_width <= 1:
            raise ValueError(f"ordinal_width must be in (0, 1]; got {ordinal_width!r}")
        self.ordinal = np.asarray([a in ordinal for a in self.domain])
        self.steps = np.asarray([max(1, round(ordinal_width * s)) for s in self.sizes],
                                np.int32)
        if label_attribute is not None and label_attribute not in self.domain:
            raise ValueError(f"label_attribute must be one of {list(self.domain)}; "
                             f"got {label_attribute!r}")
        self.label_column = (None if label_attribute is None
                             else list(self.domain).index(label_attribute))

    @property
    def num_attributes(self) -> int:
        return len(self.sizes)

    def _draw(self, key: jax.Array, n: int) -> jax.Array:
        return jax.random.categorical(key, self.logits, axis=-1,
                                      shape=(n, self.num_attributes)).astype(jnp.int32)

    def random(self, key: jax.Array, n: int, labels: jax.Array | None) -> jax.Array:
        rows = self._draw(key, n)
        if labels is not None:
            if self.label_column is None:
                raise ValueError("class-conditional tabular PE needs label_attribute= (the "
                                 "attribute that holds the class); got None")
            rows = rows.at[:, self.label_column].set(jnp.asarray(labels, jnp.int32))
        return rows

    def variation(self, key: jax.Array, samples: jax.Array, degree: float) -> jax.Array:
        samples = jnp.asarray(samples, jnp.int32)
        n, width = samples.shape
        draw_key, order_key, count_key = jax.random.split(key, 3)
        free = width - (self.label_column is not None)
        # Cells re-drawn per row: floor(degree * free + u), so degree * free on average.
        counts = jnp.floor(jnp.asarray(degree, jnp.float32) * free
                           + jax.random.uniform(count_key, (n, 1)))
        scores = jax.random.uniform(order_key, (n, width))
        if self.label_column is not None:  # the class cell is never chosen
            scores = scores.at[:, self.label_column].set(2.0)
        ranks = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
        redraw = ranks < counts
        fresh = self._draw(draw_key, n)
        if self.ordinal.any():
            step = jax.random.randint(jax.random.fold_in(draw_key, 1), (n, width),
                                      -self.steps, self.steps + 1)
            nearby = jnp.clip(samples + step, 0, jnp.asarray(self.sizes, jnp.int32) - 1)
            fresh = jnp.where(self.ordinal, nearby, fresh)
        return jnp.where(redraw, fresh, samples)

    def images(self, samples: jax.Array) -> jax.Array:
        """The rows in the layout PE embeds and checks (``as_images``)."""
        return as_images(samples)
