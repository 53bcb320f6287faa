"""The Private Evolution loop.

::

    S_0 = random(N)                                   # public generator only
    for t in 1..T:
        E_syn = embed(S_{t-1})                        # or the mean embedding of L variations
        v     = nn_histogram(E_priv, E_syn, k)        # per class; one vector for all classes
        h     = release(v, sigma, H)                  # the only place private data leaves
        S_t   = next_population(S_{t-1}, h)           # select parents, then variation

Class-conditional runs keep one population block per class; a private row votes only among
the synthetic samples of its own class, so the per-class histograms are disjoint parts of one
vector with L2 sensitivity 1, released by one noise draw per iteration (parallel composition:
T ledger events in total, not T x classes). The synthetic sample count of every class is given
by the caller (public), never read from the private labels.

Randomness: iteration ``t`` uses ``fold_in(key, t)`` (``t = 0`` for the initial population), so
each iteration is a pure function of the key, the iteration and its inputs. The noise itself
comes from the release mechanism's own source (a CSPRNG by default), never from ``key``.
"""

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from pe_jax import population, privacy, voting
from pe_jax._checks import check_int, require
from pe_jax.apis import Generator, Samples
from pe_jax.embeddings import Embedder

DEGREE_SCHEDULES = ("linear", "geometric")


@dataclasses.dataclass(frozen=True)
class PEConfig:
    """Everything that fixes a PE run apart from the data, the models and the key.

    Attributes:
      iterations: T, the number of releases.
      noise_multiplier: sigma, relative to L2 sensitivity 1 of the vote histogram.
      samples_per_class: synthetic population size of each class (public); one entry for an
        unconditional run.
      degrees: the variation degree used in each of the T iterations, in [0, 1]; checked
        here so that a bad schedule fails before the first release, not after it.
      threshold: H, subtracted from the noisy histogram (post-processing).
      k: each private row votes for its k nearest synthetic samples.
      metric: the voting distance (see ``pe_jax.voting``).
      selection: ``sample`` or ``rank`` (see ``pe_jax.population``).
      variation_folds: variations drawn from each selected parent.
      keep_selected: whether the selected parents stay in the next population.
      lookahead: L; when positive, a synthetic sample is embedded as the mean embedding of L
        of its variations at the current degree (0 embeds the sample itself).
      non_private: release the clean histograms without noise (``noise_multiplier`` must then
        be 0); the ledger and the privacy report mark the run as NOT differentially private.
    """

    iterations: int
    noise_multiplier: float
    samples_per_class: tuple[int, ...]
    degrees: tuple[float, ...]
    threshold: float = 0.0
    k: int = 1
    metric: str = "l2"
    selection: str = "sample"
    variation_folds: int = 1
    keep_selected: bool = False
    lookahead: int = 0
    non_private: bool = False

    def __post_init__(self) -> None:
        check_int("iterations", self.iterations, 1)
        require(isinstance(self.non_private, bool), "non_private", "a bool", self.non_private)
        if self.non_private:
            require(self.noise_multiplier == 0, "noise_multiplier",
                    "0 when non_private=True (no noise)", self.noise_multiplier)
        else:
            require(np.isfinite(self.noise_multiplier) and self.noise_multiplier > 0,
                    "noise_multiplier", "a finite number > 0 (or 0 with non_private=True)",
                    self.noise_multiplier)
        require(len(self.samples_per_class) >= 1
                and all(isinstance(n, int) and n >= 1 for n in self.samples_per_class),
                "samples_per_class", "one or more ints >= 1", self.samples_per_class)
        require(len(self.degrees) == self.iterations, "degrees",
                f"one degree per iteration ({self.iterations})", self.degrees)
        require(all(0.0 <= d <= 1.0 for d in self.degrees), "degrees",
                "numbers in [0, 1] (see pe_jax.apis.Generator.variation)", self.degrees)
        require(np.isfinite(self.threshold) and self.threshold >= 0,
                "threshold", "a finite number >= 0", self.threshold)
        check_int("k", self.k, 1, min(self.samples_per_class))  # at most the smallest class
        require(self.metric in voting.METRICS, "metric", f"one of {tuple(voting.METRICS)}",
                self.metric)
        require(self.selection in population.SELECTION_METHODS, "selection",
                f"one of {population.SELECTION_METHODS}", self.selection)
        check_int("lookahead", self.lookahead, 0)
        for n in self.samples_per_class:
            population.parents_per_class(n, self.variation_folds, self.keep_selected)

    @property
    def num_classes(self) -> int:
        return len(self.samples_per_class)


@dataclasses.dataclass(frozen=True)
class IterationResult:
    """What a callback sees after iteration ``t``: only public or released values."""

    iteration: int
    samples: Samples
    labels: np.ndarray
    release: privacy.Release
    epsilon_spent: float
    degree: float


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The final synthetic population and the ledger of every release that made it."""

    samples: Samples
    labels: np.ndarray
    ledger: privacy.PrivacyLedger


Callback = Callable[[IterationResult], None]


def degree_schedule(start: float, end: float, iterations: int,
                    kind: str = "linear") -> tuple[float, ...]:
    """Variation degrees for T iterations, moving from ``start`` to ``end``.

    PE explores widely first and refines later, so degrees usually fall over the run.
    ``geometric`` needs both ends positive.
    """
    require(kind in DEGREE_SCHEDULES, "kind", f"one of {DEGREE_SCHEDULES}", kind)
    check_int("iterations", iterations, 1)
    if kind == "geometric":
        require(start > 0 and end > 0, "start/end", "positive for a geometric schedule",
                (start, end))
        return tuple(float(d) for d in np.geomspace(start, end, iterations))
    return tuple(float(d) for d in np.linspace(start, end, iterations))


def run(
    key: jax.Array,
    config: PEConfig,
    *,
    generator: Generator,
    embedder: Embedder,
    private_images: np.ndarray,
    private_labels: np.ndarray | None,
    ledger: privacy.PrivacyLedger,
    callbacks: Sequence[Callback] = (),
    mesh: jax.sharding.Mesh | None = None,
    noise_rng: np.random.Generator | None = None,
    progress: bool = True,
) -> RunResult:
    """Runs T iterations of PE and returns the final population.

    Args:
      key: the run's base PRNG key.
      config: the run's settings.
      generator: the public model behind the random and variation APIs.
      embedder: maps images to voting features; applied to private and synthetic images.
      private_images: ``(n, H, W, C)`` private images, embedded once here.
      private_labels: ``(n,)`` ints in ``[0, config.num_classes)``, or None for an
        unconditional run (then ``samples_per_class`` has one entry).
      ledger: records every release and refuses one that would exceed its budget.
      callbacks: called after each iteration with an ``IterationResult``.
      mesh: when given, voting shards the private rows over it.
      noise_rng: a seeded NumPy generator for reproducible research noise; None (the
        default) draws noise from the operating system's CSPRNG.
      progress: show a progress bar.
    """
    private_by_class = _embed_private(embedder, private_images, private_labels, config)
    labels = np.repeat(np.arange(config.num_classes, dtype=np.int32), config.samples_per_class)
    samples = generator.random(
        jax.random.fold_in(key, 0), len(labels),
        None if private_labels is None else jnp.asarray(labels))
    members = population.class_members(labels, config.num_classes)

    bar = tqdm(range(1, config.iterations + 1), desc="PE", unit="iter", disable=not progress)
    for t in bar:
        degree = config.degrees[t - 1]
        embed_key, next_key = jax.random.split(jax.random.fold_in(key, t))
        synthetic = _embed_synthetic(embed_key, generator, embedder, samples, degree,
                                     config.lookahead)
        clean = np.zeros(len(labels), np.float32)
        for private, index in zip(private_by_class, members):
            clean[index] = voting.nn_histogram(private, synthetic[index], k=config.k,
                                               metric=config.metric, mesh=mesh)
        released = privacy.release(clean, noise_multiplier=config.noise_multiplier,
                                   threshold=config.threshold, ledger=ledger, k=config.k,
                                   rng=noise_rng, non_private=config.non_private)
        samples, labels = population.next_population(
            next_key, generator, samples, labels, released.thresholded,
            num_classes=config.num_classes, degree=degree, method=config.selection,
            variation_folds=config.variation_folds, keep_selected=config.keep_selected)
        members = population.class_members(labels, config.num_classes)
        spent = ledger.epsilon_spent()
        bar.set_postfix(epsilon=f"{spent:.3g}")
        result = IterationResult(t, samples, labels, released, spent, degree)
        for callback in callbacks:
            callback(result)
    return RunResult(samples=samples, labels=labels, ledger=ledger)


def _embed_private(embedder: Embedder, images: np.ndarray, labels: np.ndarray | None,
                   config: PEConfig) -> list[jax.Array]:
    """Checks the private data and embeds it once, split by class.

    Every check happens here, before anything is released. Rows whose features are not
    finite stay in (the voting kernel gives them zero votes), so they change nothing that
    is released; an empty private set (or class) votes for nothing, so its releases are
    noise only.
    """
    images = np.asarray(images)
    require(images.ndim == 4, "private_images", "an array of shape (n, H, W, C)",
            f"shape {images.shape}")
    require(jnp.issubdtype(images.dtype, jnp.floating), "private_images",
            "a real floating-point array (images in [0, 1])", images.dtype)
    if labels is None:
        require(config.num_classes == 1, "samples_per_class",
                "a single entry when private_labels is None", config.samples_per_class)
        labels = np.zeros(len(images), np.int32)
    labels = np.asarray(labels)
    require(labels.shape == (len(images),), "private_labels",
            f"shape ({len(images)},), one per private image", f"shape {labels.shape}")
    require(np.issubdtype(labels.dtype, np.integer), "private_labels", "integers",
            labels.dtype)
    require(labels.size == 0 or (labels.min() >= 0 and labels.max() < config.num_classes),
            "private_labels", f"ints in [0, {config.num_classes}) (one per class given in "
            "samples_per_class)", "values outside that range")
    # An empty set is embedded through one blank image so that its features keep their width.
    blank = np.zeros((1, *images.shape[1:]), np.float32)
    features = embedder(jnp.asarray(images if len(images) else blank, jnp.float32))[:len(images)]
    return [features[np.flatnonzero(labels == c)] for c in range(config.num_classes)]


def _embed_synthetic(key: jax.Array, generator: Generator, embedder: Embedder,
                     samples: Samples, degree: float, lookahead: int) -> np.ndarray:
    """Voting features of the population: its own, or the mean over ``lookahead`` variations."""
    if lookahead == 0:
        return np.asarray(embedder(generator.images(samples)))
    total = sum(
        embedder(generator.images(generator.variation(jax.random.fold_in(key, i), samples,
                                                      degree)))
        for i in range(lookahead))
    return np.asarray(total / lookahead)

