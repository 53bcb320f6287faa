"""The Private Evolution driver: budget check -> noise draw -> compiled step -> callbacks.

::

    S_0 = random(N)                                   # public generator only
    for t in 1..T:
        z     = draw_noise()                          # host CSPRNG; ledger checked, recorded
        S_t, v~ = step(S_{t-1}, E_priv, z, degree_t)  # one compiled program (pe_jax.step):
                                                      # embed, vote, v + z, threshold, select,
                                                      # variation
        callbacks(t, S_t, v~)

The whole run's T releases are checked against the ledger's budget before the first one.
In the loop the host draws iteration t + 1's noise while the device runs step t (JAX
dispatches asynchronously); ``fused=True`` draws all T noise vectors up front and runs the
T steps as one ``lax.scan``, with the callbacks after it. Both give the same results for the
same noise.

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
import numbers
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from pe_jax import population, privacy, processes, resume, sharding, step, voting
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
      threshold_sigmas: c, a further threshold in units of the noise's standard deviation:
        the run subtracts ``threshold + c * noise_multiplier`` (``threshold_value``), so the
        same c cuts the same share of pure-noise counts at every epsilon.
      k: each private row votes for its k nearest synthetic samples.
      metric: the voting distance (see ``pe_jax.voting``).
      selection: ``sample`` or ``rank`` (see ``pe_jax.population``).
      variation_folds: variations drawn from each selected parent.
      keep_selected: whether a block of unchanged samples stays in the next population.
      keep: what that block holds: ``"parents"`` (the selected parents) or ``"top"`` (each
        class's top-voted candidates, distinct); see ``pe_jax.population``.
      random_fraction: the share of each class's population that is fresh ``random``
        samples in every generation, in [0, 1).
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
    threshold_sigmas: float = 0.0
    keep: str = "parents"
    random_fraction: float = 0.0
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
                and all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
                        for n in self.samples_per_class),
                "samples_per_class", "one or more ints >= 1", self.samples_per_class)
        # NumPy integers are ints too; stored as Python ints for the layout and the report.
        object.__setattr__(self, "samples_per_class", tuple(map(int, self.samples_per_class)))
        require(len(self.degrees) == self.iterations, "degrees",
                f"one degree per iteration ({self.iterations})", self.degrees)
        require(all(0.0 <= d <= 1.0 for d in self.degrees), "degrees",
                "numbers in [0, 1] (see pe_jax.apis.Generator.variation)", self.degrees)
        require(np.isfinite(self.threshold) and self.threshold >= 0,
                "threshold", "a finite number >= 0", self.threshold)
        require(np.isfinite(self.threshold_sigmas) and self.threshold_sigmas >= 0,
                "threshold_sigmas", "a finite number >= 0", self.threshold_sigmas)
        require(self.keep in population.KEEP_RULES, "keep",
                f"one of {population.KEEP_RULES}", self.keep)
        check_int("k", self.k, 1, min(self.samples_per_class))  # at most the smallest class
        require(self.metric in voting.METRICS, "metric", f"one of {tuple(voting.METRICS)}",
                self.metric)
        require(self.selection in population.SELECTION_METHODS, "selection",
                f"one of {population.SELECTION_METHODS}", self.selection)
        check_int("lookahead", self.lookahead, 0)
        require(len(self.image_range) == 2 and np.all(np.isfinite(self.image_range))
                and self.image_range[0] < self.image_range[1], "image_range",
                "finite (low, high) with low < high", self.image_range)
        self.layout  # checks the class sizes against the folds

    @property
    def num_classes(self) -> int:
        return len(self.samples_per_class)

    @property
    def layout(self) -> population.PopulationLayout:
        """Where each class's samples sit in the population."""
        return population.PopulationLayout(self.samples_per_class, self.variation_folds,
                                           self.keep_selected, self.random_fraction)

    @property
    def threshold_value(self) -> float:
        """The H the run subtracts: ``threshold + threshold_sigmas * noise_multiplier``."""
        return self.threshold + self.threshold_sigmas * self.noise_multiplier

    @property
    def step_settings(self) -> step.StepSettings:
        """What one compiled iteration needs of this config."""
        return step.StepSettings(k=self.k, metric=self.metric, threshold=self.threshold_value,
                                 selection=self.selection, lookahead=self.lookahead,
                                 keep=self.keep)


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


def on_process_zero(callbacks: Sequence[Callback]) -> list[Callback]:
    """``callbacks`` that write a run's outputs, as one callback that process 0 alone runs.

    Every process gathers the iteration's population to the host (``processes.gather``; in
    a multi-process run it is sharded over every process's devices and the gather is a
    collective) and process 0 calls ``callbacks`` with it, so what they write does not
    depend on how many devices or processes the run used.
    """
    def gathered(result: IterationResult) -> None:
        samples = processes.gather(result.samples)
        if processes.is_writer():
            for callback in callbacks:
                callback(dataclasses.replace(result, samples=samples))

    return [gathered]


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
    fused: bool = False,
    checkpoint: resume.RunCheckpoint | None = None,
    on_start: Callable[[Samples, np.ndarray], None] | None = None,
) -> RunResult:
    """Runs T iterations of PE and returns the final population.

    Args:
      key: the run's base PRNG key.
      config: the run's settings.
      generator: the public model behind the random and variation APIs (traceable: its
        methods run inside the compiled step).
      embedder: maps images to voting features; applied to private and synthetic images.
      private_images: ``(n, H, W, C)`` private images, embedded once here.
      private_labels: ``(n,)`` ints in ``[0, config.num_classes)``, or None for an
        unconditional run (then ``samples_per_class`` has one entry).
      ledger: records every release and refuses a run that would exceed its budget before
        the first release.
      callbacks: called after each iteration with an ``IterationResult``.
      mesh: run on its devices (``pe_jax.sharding``): the private blocks and the population
        are split over them (the population size must be a multiple of its device count);
        the results equal those without a mesh. In a multi-process run (after
        ``jax.distributed.initialize``; ``jax.process_count() > 1``) it is required and spans
        every process's devices (``sharding.global_mesh()``): every process calls ``run`` with
        the same arguments except ``private_images`` and ``private_labels``, which are its
        own share of the private rows (e.g. ``ImageSource.for_host()``; the shares together
        are the private set, each embedded on its own host). Every process's checks of its
        share and of its ledger must pass, or every process stops before the first release
        (``pe_jax.processes.agree``). Process 0 draws each release's noise and broadcasts it
        (``_draw_broadcast``), so every process applies the same release and keeps a ledger
        equal to the single-process one, and the results equal a one-process run on as many
        devices. The samples that callbacks and the result
        get are then global arrays sharded over all processes (gather them with
        ``jax.experimental.multihost_utils.process_allgather``). A checkpoint folder must then
        be one that every process sees (``pe_jax.resume``).
      noise_rng: a seeded NumPy generator for reproducible research noise: anyone with the
        seed can recompute the noise, so the ledger marks such releases as seeded, the
        privacy report says the run is NOT differentially private, and a ledger never mixes
        them with CSPRNG releases. None (the default) draws noise from the operating
        system's CSPRNG.
      progress: show a progress bar.
      fused: draw all T noise vectors first (recording all T releases) and run the T
        iterations as one ``lax.scan``; the callbacks run after it, and it holds every
        iteration's population in memory at once.
      checkpoint: saves each iteration's noise as soon as it is drawn and the state after
        each iteration (``pe_jax.resume``); a run given the checkpoint of an interrupted one
        continues it, re-using recorded noise instead of drawing again. Not with ``fused``.
      on_start: called with the initial population ``S_0`` (public: drawn from the generator
        alone) and its labels before the first iteration, e.g. to measure what the prior
        gives without PE; not when a checkpoint resumes a run.
    """
    require(not (fused and checkpoint is not None), "checkpoint",
            "None with fused=True (the scan keeps no per-iteration state)", "a checkpoint")
    multiprocess = jax.process_count() > 1
    if multiprocess:
        require(mesh is not None, "mesh", "a mesh over every process's devices in a "
                "multi-process run (pe_jax.sharding.global_mesh())", None)
    layout = config.layout
    event = privacy.release_event(noise_multiplier=config.noise_multiplier, k=config.k,
                                  rng=noise_rng, non_private=config.non_private)
    _check_noise_fits_int32(event, processes.total_over_processes(len(private_images)))
    done = drawn = 0  # iterations finished / noise vectors drawn, before this call
    if checkpoint is not None:
        done = checkpoint.iteration
        drawn = done + checkpoint.pending_draws(after=done)
        _restore_noise_rng(noise_rng, checkpoint.noise_rng_state())
    if drawn < config.iterations:  # the rest of the run, before any private data
        processes.agree(lambda: ledger.check(event, times=config.iterations - drawn),
                        "the privacy budget check")
    # Epsilon after each release whose noise was recorded before an interruption.
    recorded = ledger.epsilon_history()[len(ledger) - (drawn - done):] if drawn > done else []
    # The bar says what the long silent phases are doing (embedding, compiling, callbacks).
    bar = tqdm(total=config.iterations, initial=done, desc="PE: embedding the private data",
               unit="iter", disable=not progress)
    private = _embed_private(embedder, private_images, private_labels, config, mesh)
    state = step.initial_state(key, generator, layout, conditional=private_labels is not None)
    if on_start is not None and done == 0:
        bar.set_description("PE: measuring the initial population")
        on_start(state.samples, layout.labels)
    if checkpoint is not None:
        state = checkpoint.restore(state)
    state = step.place_state(state, mesh)  # the step's layout on the mesh (none without one)
    degrees = jnp.asarray(config.degrees, jnp.float32)
    if multiprocess:  # every input of the compiled step a global array on the mesh
        degrees = jax.device_put(np.asarray(config.degrees, np.float32),
                                 sharding.replicated(sharding.auto(mesh)))

    def draw(t: int) -> tuple[np.ndarray, float]:
        """The noise of iteration ``t`` (ledger checked and recorded; or, when it was drawn
        before an interruption, the recorded noise), and the epsilon after its release."""
        if t <= drawn:
            return checkpoint.pending_noise(t), recorded[t - done - 1]
        if multiprocess:
            noise = _draw_broadcast(event, ledger, len(layout.labels), noise_rng)
        else:
            noise = privacy.draw_noise(event, ledger, len(layout.labels), rng=noise_rng)
        if checkpoint is not None:
            checkpoint.noise_drawn(t, noise, noise_rng)
        return noise, ledger.epsilon_spent()

    def report(t: int, samples: Samples, noisy_counts: jax.Array, spent: float) -> None:
        released = privacy.Release.of(np.asarray(noisy_counts), config.k,
                                      config.threshold_value)
        result = IterationResult(t, samples, layout.labels, released, spent,
                                 config.degrees[t - 1])
        bar.update()
        bar.set_postfix(epsilon=f"{spent:.3g}")
        if callbacks:
            bar.set_description(f"PE: callbacks of iteration {t} (outputs, metrics)")
            for callback in callbacks:
                callback(result)
        bar.set_description("PE")

    bar.set_description("PE: compiling the step")
    settings = dataclasses.replace(config.step_settings, conditional=private_labels is not None)
    noise_shape = jax.ShapeDtypeStruct((len(layout.labels),), jnp.int32)
    if fused:
        scan = step.make_scan(generator, embedder, layout, settings, mesh)
        # Compiled before any noise is drawn: a shape or type error costs no privacy.
        scan = scan.lower(state, private, jax.ShapeDtypeStruct(
            (config.iterations, *noise_shape.shape), jnp.int32), degrees).compile()
        bar.set_description(f"PE: {config.iterations} iterations in one scan")
        noises, spent = zip(*(draw(t) for t in range(1, config.iterations + 1)))
        state, (populations, outputs) = scan(state, private, _on_device(np.stack(noises), mesh),
                                             degrees)
        for t in range(1, config.iterations + 1):
            report(t, jax.tree.map(lambda leaf: leaf[t - 1], populations),
                   outputs.noisy_counts[t - 1], spent[t - 1])
    elif done < config.iterations:
        one_step = step.make_step(generator, embedder, layout, settings, mesh)
        one_step = one_step.lower(state, private, noise_shape, degrees[0]).compile()
        bar.set_description("PE")
        noise, spent = draw(done + 1)
        for t in range(done + 1, config.iterations + 1):
            state, output = one_step(state, private, _on_device(noise, mesh),
                                     degrees[t - 1])
            spent_t = spent
            if t < config.iterations:  # drawn on the host while the device runs step t
                noise, spent = draw(t + 1)
            # The next step donates the state: callbacks get their own copy to keep.
            samples = jax.tree.map(jnp.copy, state.samples) if callbacks else state.samples
            report(t, samples, output.noisy_counts, spent_t)
            if checkpoint is not None:
                checkpoint.save(state, t, draws=max(drawn, min(t + 1, config.iterations)),
                                noise_rng=noise_rng)
    bar.close()
    return RunResult(samples=state.samples, labels=layout.labels, ledger=ledger)


def _restore_noise_rng(noise_rng: np.random.Generator | None,
                       saved: tuple[int, dict | None]) -> None:
    """Puts a seeded noise generator back where the interrupted run left it."""
    draws, saved = saved
    if draws == 0:
        return
    require((noise_rng is None) == (saved is None), "noise_rng",
            "what the interrupted run used (a seeded generator, or None for the CSPRNG)",
            "the other kind")
    if noise_rng is not None:
        noise_rng.bit_generator.state = saved


def _on_device(noise: np.ndarray, mesh: jax.sharding.Mesh | None) -> jax.Array:
    """The drawn noise as the int32 array the step adds (``_check_noise_fits_int32``); in a
    multi-process run a global array replicated on ``mesh`` (the same noise everywhere)."""
    if jax.process_count() > 1:
        return jax.device_put(noise.astype(np.int32), sharding.replicated(sharding.auto(mesh)))
    return jax.device_put(noise.astype(np.int32))


def _draw_broadcast(event: privacy.ReleaseEvent, ledger: privacy.PrivacyLedger, bins: int,
                    noise_rng: np.random.Generator | None) -> np.ndarray:
    """One release's noise in a multi-process run: drawn once, by process 0, and broadcast.

    Process 0 checks its ledger, draws (its ``noise_rng``, or the CSPRNG) and records the
    release, as ``privacy.draw_noise`` does in a single process; every other process checks
    its own ledger, receives process 0's noise and records the same event. So every process
    adds the same noise, each ledger equals the single-process one, and the other processes'
    ``noise_rng`` is never drawn from (it only says whether the release is seeded). The noise
    travels as int32, which ``_check_noise_fits_int32`` has made sure it fits.
    """
    from jax.experimental import multihost_utils

    if jax.process_index() == 0:
        noise = privacy.draw_noise(event, ledger, bins, rng=noise_rng)
    else:
        ledger.check(event)
        noise = np.zeros(bins, np.int64)
    noise = np.asarray(multihost_utils.broadcast_one_to_all(noise.astype(np.int32)),
                       np.int64)
    if jax.process_index() != 0:
        ledger.record(event)
    return noise


def _check_noise_fits_int32(event: privacy.ReleaseEvent, n_private: int) -> None:
    """Counts plus noise are int32 in the step: refuse, before anything, a scale whose noise
    (at most ``privacy.noise_bound``) could overflow them."""
    if event.mechanism == privacy.NON_PRIVATE:
        return
    largest = privacy.noise_bound(event.noise_multiplier * np.sqrt(event.k)) + n_private
    require(largest < 2**31, "noise_multiplier", "small enough that counts plus noise fit in "
            "int32", f"noise up to {largest:.3g}")


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
    images, labels = processes.agree(lambda: _checked_private(images, labels, config),
                                     "the private data checks")
    # An empty set is embedded through one blank image so that its features keep their width.
    blank = np.zeros((1, *images.shape[1:]), np.float32)
    features = embedder(jnp.asarray(images if len(images) else blank))[:len(images)]
    return voting.prepare_private(features, labels, num_classes=config.num_classes, mesh=mesh)


def _checked_private(images: np.ndarray, labels: np.ndarray | None,
                     config: PEConfig) -> tuple[np.ndarray, np.ndarray]:
    """The private images (``check_private_images``) and their labels, checked."""
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
    return images, labels
