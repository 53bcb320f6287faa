"""The Private Evolution loop.

::

    S_0 = random(N)                                   # public generator only
    for t in 1..T:
        E_syn = embed(S_{t-1})                        # or the mean embedding of L variations
        v     = vote(E_priv, E_syn, k)                # integer counts, all classes at once
        h     = release(v, sigma, H)                  # the only place private data leaves
        S_t   = next_population(S_{t-1}, h)           # select parents, then variation

Class-conditional runs keep one population block per class; a private row votes only among
the synthetic samples of its own class, so the per-class histograms are disjoint parts of one
vector with L2 sensitivity 1, released by one noise draw per iteration (parallel composition:
T ledger events in total, not T x classes). The synthetic sample count of every class is given
by the caller (public), never read from the private labels. The private embeddings are laid
out for the vote kernel once (``voting.prepare_private``), so the kernel compiles once per run
whatever the private class sizes.

Private images are checked at ingestion, before anything is spent, by one policy for every
embedder: they must be finite and inside the declared ``PEConfig.image_range`` (``[0, 1]`` by
default; ``check_private_images``).

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
      image_range: the declared ``(low, high)`` range of image values; private images
        outside it (or not finite) stop the run before anything is spent.
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
    image_range: tuple[float, float] = (0.0, 1.0)

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
        require(len(self.image_range) == 2 and np.all(np.isfinite(self.image_range))
                and self.image_range[0] < self.image_range[1], "image_range",
                "finite (low, high) with low < high", self.image_range)
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
      noise_rng: a seeded NumPy generator for reproducible research noise: anyone with the
        seed can recompute the noise, so the ledger marks such releases as seeded, the
        privacy report says the run is NOT differentially private, and a ledger never mixes
        them with CSPRNG releases. None (the default) draws noise from the operating
        system's CSPRNG.
      progress: show a progress bar.
    """
    private = _embed_private(embedder, private_images, private_labels, config, mesh)
    labels = np.repeat(np.arange(config.num_classes, dtype=np.int32), config.samples_per_class)
    samples = generator.random(
        jax.random.fold_in(key, 0), len(labels),
        None if private_labels is None else jnp.asarray(labels))

    bar = tqdm(range(1, config.iterations + 1), desc="PE", unit="iter", disable=not progress)
    for t in bar:
        degree = config.degrees[t - 1]
        embed_key, next_key = jax.random.split(jax.random.fold_in(key, t))
        synthetic = _embed_synthetic(embed_key, generator, embedder, samples, degree,
                                     config.lookahead)
        counts = voting.vote(private, synthetic, voting.class_index(labels, config.num_classes),
                             k=config.k, metric=config.metric, mesh=mesh)
        released = privacy.release(counts, noise_multiplier=config.noise_multiplier,
                                   threshold=config.threshold, ledger=ledger, k=config.k,
                                   rng=noise_rng, non_private=config.non_private)
        samples, labels = population.next_population(
            next_key, generator, samples, labels, released.thresholded,
            num_classes=config.num_classes, degree=degree, method=config.selection,
            variation_folds=config.variation_folds, keep_selected=config.keep_selected)
        spent = ledger.epsilon_spent()
        bar.set_postfix(epsilon=f"{spent:.3g}")
        result = IterationResult(t, samples, labels, released, spent, degree)
        for callback in callbacks:
            callback(result)
    return RunResult(samples=samples, labels=labels, ledger=ledger)


def check_private_images(images: np.ndarray,
                         value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """``images`` as float32 ``(n, H, W, C)`` if every value is finite and in ``value_range``.

    The one ingestion policy for private images, whatever the embedder: anything else stops
    the run here, before anything is spent, with an error that counts the bad values and
    never shows them.  (Raw scikit-learn digits on their 0..16 scale, say, would otherwise
    run without a word and give garbage; NaN images would vote with some embedders.)
    """
    images = np.asarray(images)
    require(images.ndim == 4, "private_images", "an array of shape (n, H, W, C)",
            f"shape {images.shape}")
    require(jnp.issubdtype(images.dtype, jnp.floating), "private_images",
            "a real floating-point array (images with values in image_range)", images.dtype)
    values = images.astype(np.float32)
    bad = int(np.count_nonzero(~np.isfinite(values)))
    require(bad == 0, "private_images", "finite (images with values in [0, 1])",
            f"{bad} NaN or infinite values")
    low, high = value_range
    outside = int(np.count_nonzero((values < low) | (values > high)))
    require(outside == 0, "private_images", f"inside the declared image_range [{low:g}, "
            f"{high:g}] (scale them first, e.g. divide 8-bit pixels by 255)",
            f"{outside} values outside it")
    return values


def _embed_private(embedder: Embedder, images: np.ndarray, labels: np.ndarray | None,
                   config: PEConfig, mesh: jax.sharding.Mesh | None) -> voting.PrivateBlocks:
    """Checks the private data, embeds it once and lays it out for the vote kernel.

    Every check happens here, before anything is released. An empty private set (or class)
    votes for nothing, so its releases are noise only; a row whose features are not finite
    (which checked images do not give with the shipped embedders) gets zero votes.
    """
    images = check_private_images(images, config.image_range)
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
    features = embedder(jnp.asarray(images if len(images) else blank))[:len(images)]
    return voting.prepare_private(features, labels, num_classes=config.num_classes, mesh=mesh)


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

