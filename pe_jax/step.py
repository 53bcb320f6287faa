"""One PE iteration as one compiled program: :class:`PEState` and :func:`make_step`.

::

    step(state, private, noise, degree) -> (next state, noisy counts)

      E_syn   = embed(S)                          # or the mean embedding of L variations
      counts  = vote(private, E_syn)              # int32, all classes at once, never returned
      noisy   = counts + noise                    # the release: noise drawn before the step
      h       = max(noisy / sqrt(k) - H, 0)       # post-processing (privacy.released_values)
      S_next  = next_population(S, h, degree)     # select per class, then variation

The noise is independent of the data, so the driver draws it on the host from the CSPRNG
(``privacy.draw_noise``: ledger check, draw, ledger record) and passes it in as an int32
array; the counts stay integers from the kernel to the addition, and nothing but
``counts + noise`` leaves the program. The degree is a traced scalar, so a run compiles the
step once; the private blocks (``voting.prepare_private``) have shapes that do not depend on
the private class sizes. The state is donated: the population is updated in place.

Randomness: iteration ``t`` uses ``fold_in(state.key, t)`` only, so it is a pure function of
the key, ``t`` and its inputs, and a resumed run reproduces an uninterrupted one.

On a mesh (``pe_jax.sharding``: rows over all devices, compiled code on the mesh's Auto
view) the population is sharded over the devices for generation and embedding, its
embeddings are gathered (replicated) for the vote, each device votes with its shard of the
private blocks and a ``psum`` adds the integer counts; the released counts are replicated.
The population size must be a multiple of the device count. Place the first state with
:func:`place_state` (``initial_state(..., mesh=mesh)`` does), so that every step's input
and output layouts agree and the step compiles once. Every row is computed the same way on
any number of devices, so a run on a mesh equals the single-device run bitwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pe_jax import population, privacy, sharding, voting
from pe_jax._checks import require
from pe_jax.apis import Generator, Samples
from pe_jax.embeddings import Embedder
from pe_jax.population import PopulationLayout

__all__ = ["PEState", "Step", "StepOutput", "StepSettings", "initial_state", "make_scan",
           "make_step", "place_state"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PEState:
    """The population after ``iteration`` iterations, and the run's base key.

    ``labels`` are the population's public class labels (fixed by its layout).
    """

    samples: Samples
    labels: jax.Array
    key: jax.Array
    iteration: jax.Array  # int32 scalar


class StepOutput(NamedTuple):
    """What one step releases: the integer counts plus noise, and their released values."""

    noisy_counts: jax.Array  # (N_syn,) int32: counts + noise, the DP release
    thresholded: jax.Array  # (N_syn,) float32: max(noisy_counts / sqrt(k) - H, 0)


def initial_state(key: jax.Array, generator: Generator, layout: PopulationLayout, *,
                  conditional: bool, mesh: jax.sharding.Mesh | None = None) -> PEState:
    """``S_0 = random(N)`` from ``fold_in(key, 0)``: public generator only.

    With ``mesh`` the state is laid out as the step keeps it (:func:`place_state`).
    """
    labels = jnp.asarray(layout.labels) if conditional else None
    samples = generator.random(jax.random.fold_in(key, 0), len(layout.labels), labels)
    # Every leaf its own buffer: the step donates the state, and a generator may return the
    # labels it was given as a leaf of its samples.
    state = jax.tree.map(jnp.copy, PEState(samples, jnp.asarray(layout.labels), key,
                                           jnp.int32(0)))
    return state if mesh is None else place_state(state, mesh)


def place_state(state: PEState, mesh: jax.sharding.Mesh | None) -> PEState:
    """``state`` laid out as the step keeps it on ``mesh``: the population (samples and
    labels) sharded by rows over its devices, the key and the iteration replicated.

    Eagerly it places the arrays; inside ``jax.jit`` it constrains them.
    """
    if mesh is None:
        return state
    mesh = sharding.auto(mesh)
    n = len(state.labels)
    require(n % sharding.device_count(mesh) == 0, "population size (sum of samples_per_class)",
            f"a multiple of the mesh's {sharding.device_count(mesh)} devices", n)
    samples, labels = sharding.shard_rows((state.samples, state.labels), mesh)
    key, iteration = sharding.replicate((state.key, state.iteration), mesh)
    return PEState(samples, labels, key, iteration)


def embed_population(key: jax.Array, generator: Generator, embedder: Embedder,
                     samples: Samples, degree: jax.Array, lookahead: int) -> jax.Array:
    """Voting features of the population: its own, or the mean over ``lookahead`` variations."""
    if lookahead == 0:
        return embedder(generator.images(samples))
    total = sum(
        embedder(generator.images(generator.variation(jax.random.fold_in(key, i), samples,
                                                      degree)))
        for i in range(lookahead))
    return total / lookahead


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """The settings one iteration uses (``evolve.PEConfig.step_settings`` builds them)."""

    k: int = 1
    metric: str = "l2"
    threshold: float = 0.0
    selection: str = "sample"
    lookahead: int = 0
    screen: bool | None = None
    keep: str = "parents"  # what the kept block holds (population.KEEP_RULES)
    conditional: bool = True  # fresh random samples drawn with their class labels


Step = Callable[[PEState, voting.PrivateBlocks, jax.Array, jax.Array],
                tuple[PEState, StepOutput]]


def _step_function(generator: Generator, embedder: Embedder, layout: PopulationLayout,
                   settings: StepSettings, mesh: jax.sharding.Mesh | None) -> Step:
    """The step as a plain traceable function (see :func:`make_step`)."""
    mesh = sharding.auto(mesh)
    devices = sharding.device_count(mesh)
    require(len(layout.labels) % devices == 0, "population size (sum of samples_per_class)",
            f"a multiple of the mesh's {devices} devices", len(layout.labels))

    def step(state: PEState, private: voting.PrivateBlocks, noise: jax.Array,
             degree: jax.Array) -> tuple[PEState, StepOutput]:
        state = place_state(state, mesh)  # the population sharded for generation and embedding
        t = state.iteration + 1
        embed_key, next_key = jax.random.split(jax.random.fold_in(state.key, t))
        synthetic = embed_population(embed_key, generator, embedder, state.samples, degree,
                                     settings.lookahead)
        synthetic = sharding.replicate(synthetic, mesh)  # gathered: every device votes over all
        counts = voting.vote(private, synthetic, layout.members, k=settings.k,
                             metric=settings.metric, mesh=mesh, screen=settings.screen)
        noisy_counts = counts + noise.astype(jnp.int32)
        _, thresholded = privacy.released_values(noisy_counts, settings.k, settings.threshold)
        output = sharding.replicate(StepOutput(noisy_counts, thresholded), mesh)
        samples = population.next_population(next_key, generator, state.samples,
                                              output.thresholded, layout, degree=degree,
                                              method=settings.selection, keep=settings.keep,
                                              conditional=settings.conditional)
        return place_state(PEState(samples, state.labels, state.key, t), mesh), output

    return step


def make_step(generator: Generator, embedder: Embedder, layout: PopulationLayout,
              settings: StepSettings, mesh: jax.sharding.Mesh | None = None) -> Step:
    """The jitted, state-donating ``step(state, private, noise, degree)``.

    ``private`` are the laid-out private embeddings (``voting.prepare_private`` with
    ``layout.num_classes`` classes), ``noise`` the ``(N_syn,)`` integer noise of this
    iteration (``privacy.draw_noise``) and ``degree`` the variation degree (a float32 scalar,
    traced). With ``mesh``, see the module docstring: place the first state with
    :func:`place_state` and the private blocks with ``prepare_private(..., mesh=mesh)``.
    """
    return jax.jit(_step_function(generator, embedder, layout, settings, mesh),
                   donate_argnums=0)


def make_scan(generator: Generator, embedder: Embedder, layout: PopulationLayout,
              settings: StepSettings, mesh: jax.sharding.Mesh | None = None,
              ) -> Callable[[PEState, voting.PrivateBlocks, jax.Array, jax.Array],
                            tuple[PEState, tuple[Samples, StepOutput]]]:
    """``run(state, private, noises (T, N_syn), degrees (T,))``: T steps as one ``lax.scan``.

    Returns the final state and, per iteration, the population and the step's output
    (stacked along a leading T axis). The same step as :func:`make_step`, so the results
    equal T calls of it with the same noise.
    """
    step = _step_function(generator, embedder, layout, settings, mesh)

    def run(state, private, noises, degrees):
        def body(state, inputs):
            state, output = step(state, private, *inputs)
            return state, (state.samples, output)

        return jax.lax.scan(body, state, (noises, degrees))

    return jax.jit(run, donate_argnums=0)
