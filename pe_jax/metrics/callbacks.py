"""Metrics as PE callbacks: every n iterations, measure the population and log it.

``MetricsCallback`` plugs into ``pe_jax.evolve.run(..., callbacks=[...])``: after every
``every``-th iteration (and the last one, when given) it renders the population, evaluates
each metric against a real reference set and hands the values to a ``pe_jax.tracking.Tracker``
(CSV, plots, per-class image grid, optional TensorBoard). Reference features are computed
once, when the metric is built. ``measure_initial`` measures the initial population (the
public generator alone) as iteration 0 with epsilon 0, the baseline the plots show PE's
gain against. A PE driver runs it before the first iteration on every callback that has it,
with ``measure_initial(callbacks, samples, labels)``.

The reference set must be real data that is *not* the private set if the logged numbers are
to be shared: metrics are evaluation outputs outside the DP guarantee (only the released
histograms are covered).
"""

import dataclasses
import pathlib
from collections.abc import Callable, Mapping, Sequence

import ml_collections
import numpy as np

from pe_jax import embeddings, tracking
from pe_jax._checks import check_int, require
from pe_jax.apis import Generator
from pe_jax.embeddings import Embedder
from pe_jax.evolve import IterationResult
from pe_jax.metrics import downstream, fid, precision_recall

Metric = Callable[[np.ndarray, np.ndarray], Mapping[str, float]]
"""Synthetic images ``(n, H, W, C)`` and labels ``(n,)`` -> named values."""

METRICS = ("fid", "precision_recall", "accuracy")


def fid_metric(embedder: Embedder, real_images: np.ndarray) -> Metric:
    """``{"fid": ...}`` of the synthetic images against ``real_images`` in ``embedder``'s space."""
    reference = fid.statistics(np.asarray(embedder(real_images)))

    def metric(images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        synthetic = fid.statistics(np.asarray(embedder(images)))
        return {"fid": fid.frechet_distance(reference, synthetic)}

    return metric


def precision_recall_metric(embedder: Embedder, real_images: np.ndarray, k: int = 3) -> Metric:
    """``{"precision": ..., "recall": ...}`` against ``real_images`` (k-NN manifolds)."""
    real = np.asarray(embedder(real_images))
    radii = precision_recall.knn_radii(real, check_int("k", k, 1, len(real) - 1))

    def metric(images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        result = precision_recall.precision_recall(real, np.asarray(embedder(images)), k,
                                                   real_radii=radii)
        return {"precision": result.precision, "recall": result.recall}

    return metric


def accuracy_metric(test_images: np.ndarray, test_labels: np.ndarray, num_classes: int,
                    recipe: downstream.Recipe = downstream.DEFAULT_RECIPE) -> Metric:
    """``{"accuracy": ...}`` on the real test set of a classifier trained on the samples."""

    def metric(images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return {"accuracy": downstream.downstream_accuracy(images, labels, test_images,
                                                           test_labels, num_classes, recipe)}

    return metric


@dataclasses.dataclass(frozen=True)
class MetricsCallback:
    """Evaluates ``metrics`` every ``every`` iterations (and at ``last_iteration``) and logs
    them with ``tracker``, together with a per-class grid of the population."""

    generator: Generator
    metrics: Sequence[Metric]
    tracker: tracking.Tracker
    num_classes: int
    every: int = 1
    last_iteration: int | None = None

    def __post_init__(self) -> None:
        check_int("every", self.every, 1)

    def __call__(self, result: IterationResult) -> None:
        if result.iteration % self.every and result.iteration != self.last_iteration:
            return
        self.measure(result.iteration, result.epsilon_spent, result.samples, result.labels)

    def measure_initial(self, samples, labels) -> None:
        """Measures the initial population ``S_0 = random(N)`` (public generator only, no
        private data, epsilon 0) and logs it as iteration 0."""
        self.measure(0, 0.0, samples, labels)

    def measure(self, iteration: int, epsilon: float, samples, labels) -> None:
        """Measures ``samples`` and logs them at ``iteration`` and ``epsilon`` (e.g. a
        DP-SGD run's samples, once, at its last step)."""
        images = np.asarray(self.generator.images(samples))
        labels = np.asarray(labels)
        values: dict[str, float] = {}
        for metric in self.metrics:
            values.update(metric(images, labels))
        self.tracker.log(iteration, epsilon, values)
        self.tracker.save_grid(iteration, images, labels, self.num_classes)


def measure_initial(callbacks: Sequence[object], samples, labels) -> None:
    """Calls ``measure_initial(samples, labels)`` on every callback that has it: the hook a
    PE driver runs on the initial population, before the first iteration."""
    for callback in callbacks:
        measure = getattr(callback, "measure_initial", None)
        if measure is not None:
            measure(samples, labels)


def make_callbacks(config: ml_collections.ConfigDict, out_dir: str | pathlib.Path, *,
                   generator: Generator, reference_images: np.ndarray,
                   reference_labels: np.ndarray, num_classes: int) -> list[MetricsCallback]:
    """The metric callbacks a run config asks for (none when ``config.metrics`` is empty).

    Config keys (all optional): ``metrics`` (comma-separated names from ``METRICS``),
    ``metrics_every`` (default 1), ``metrics_embedding`` (the feature space of FID and
    precision/recall, default ``encoder``; ``inception`` needs ``inception_weights``, see
    ``pe_jax.embeddings.from_config``),
    ``metrics_k`` (precision/recall k, default 3), ``tensorboard`` (default False),
    ``iterations`` (the last iteration is always measured). Files go to ``out_dir/metrics``.
    """
    names = [n.strip() for n in str(config.get("metrics", "")).split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    require(not unknown, "metrics", f"comma-separated names from {METRICS}", unknown)
    if not names:
        return []
    needs_features = {"fid", "precision_recall"} & set(names)
    space = config.get("metrics_embedding", "encoder")
    embedder = embeddings.from_config(config, space) if needs_features else None
    builders = {
        "fid": lambda: fid_metric(embedder, reference_images),
        "precision_recall": lambda: precision_recall_metric(
            embedder, reference_images, config.get("metrics_k", 3)),
        "accuracy": lambda: accuracy_metric(reference_images, reference_labels, num_classes),
    }
    tracker = tracking.Tracker(pathlib.Path(out_dir) / "metrics",
                               tensorboard=config.get("tensorboard", False),
                               feature_space=space if needs_features else None)
    return [MetricsCallback(generator, [builders[n]() for n in names], tracker, num_classes,
                            every=config.get("metrics_every", 1),
                            last_iteration=config.get("iterations", None))]
