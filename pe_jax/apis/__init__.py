"""The two generator APIs that Private Evolution uses, as a protocol.

PE never looks inside a generative model: it asks for fresh samples (``random``) and for
samples near given ones (``variation``). A generator's *samples* are any pytree whose leaves
share a leading axis of length n (plain image arrays, or a simulator's parameters), so PE can
select and concatenate them with ``jax.tree.map``; ``images`` turns them into pixels for
embedding and for output. All three are pure functions of their inputs and keys, so they can
run inside ``jax.jit``.
"""

from typing import Any, Protocol, runtime_checkable

import jax

Samples = Any
"""A pytree of arrays with a shared leading axis: one entry per sample."""


@runtime_checkable
class Generator(Protocol):
    """A public generative model seen through PE's two APIs (plus a pixel view)."""

    def random(self, key: jax.Array, n: int, labels: jax.Array | None) -> Samples:
        """Draws ``n`` fresh samples; ``labels`` (shape ``(n,)``, int) conditions each one."""
        ...

    def variation(self, key: jax.Array, samples: Samples, degree: float) -> Samples:
        """Draws one sample near each of ``samples``.

        ``degree`` lies in [0, 1]: 0 keeps the samples as they are, 1 moves as far as the
        generator goes (about as far as a fresh ``random`` sample); PE lowers it over the run.
        """
        ...

    def images(self, samples: Samples) -> jax.Array:
        """The samples as float32 images of shape ``(n, height, width, channels)`` in [0, 1]."""
        ...
