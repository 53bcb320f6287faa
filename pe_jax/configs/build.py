"""The objects of a ``pe-jax run``, each built from its section of the run config.

``data_source(config.data)`` opens the private data set (reading no image) and
``private_and_reference`` splits it by the fixed held-out rule; ``embedder`` builds the
``embedding`` section's (or the metrics') feature space; ``noise_plan(config.privacy, pe)`` the
noise multiplier and generator; ``pe_config(config.pe, ...)`` the ``pe_jax.evolve.PEConfig``;
``metric_callbacks(config.metrics, ...)`` the metrics. The generator comes from
``pe_jax.apis.factory.make_generator(config.generator, ...)``. Each raises a ValueError that
names the section's key.
"""

import dataclasses
from typing import TYPE_CHECKING

import ml_collections

if TYPE_CHECKING:
    import numpy as np

    from pe_jax.data import ImageSource, LabelledImages
    from pe_jax.embeddings import Embedder
    from pe_jax.evolve import PEConfig

PE_DERIVED = ("samples_per_class", "degree_start", "degree_end", "degree_schedule")
"""Keys of the ``pe`` section that ``pe_config`` turns into ``PEConfig`` fields; every other
key is a ``PEConfig`` field of the same name and reaches it unchanged."""


def data_source(data: ml_collections.ConfigDict) -> "ImageSource":
    """The data set the ``data`` section names, opened: lazy sources read no image here
    (scikit-learn's digits, which ship as one array, are read whole)."""
    from pe_jax import data as loaders
    from pe_jax.configs.validate import check_data

    check_data(data)
    class_names = list(data.class_names) or None
    opening = {
        "sklearn_digits": loaders.sklearn_digits_source,
        "tfds": lambda: loaders.tfds_source(data.name, data.split, data.data_dir,
                                            class_names=class_names),
        "idx": lambda: loaders.mnist_format_source(data.path, data.split,
                                                   class_names=class_names),
        "fashion_mnist_debian": lambda: loaders.fashion_mnist_debian(
            data.split, data.path or loaders.DEBIAN_FASHION_MNIST_DIR),
        "npz": lambda: loaders.npz_source(data.path, class_names=class_names),
        "folder": lambda: loaders.image_folder_source(data.path),
    }[data.source]
    try:
        return opening()
    except ValueError as error:
        raise ValueError(f"data (source {data.source!r}): {error}") from None


def data_set_phrase(data: ml_collections.ConfigDict, described: dict) -> str:
    """The words a privacy report uses for the data set (``described``: its ``describe()``)."""
    if data.source == "sklearn_digits":
        return "scikit-learn's 8x8 handwritten digits (sklearn.datasets.load_digits)"
    named = described.get("name") or described.get("path") or data.source
    return f"the data set {named!r} ({described.get('kind', data.source)})"


def private_and_reference(source: "ImageSource", data: ml_collections.ConfigDict
                          ) -> tuple["LabelledImages", "LabelledImages"]:
    """This process's share of the private rows, and the held-out real reference rows of the
    metrics, read (in a single process the share is every private row).

    ``source.split(data.heldout)`` sets aside the rows that a hash of their index and a fixed
    salt picks (``pe_jax.data.heldout_mask``): part of the data set's definition, the same for
    every seed. They never vote; quality metrics are measured against them only, because
    metrics are not noised and must not be computed on the private set. In a multi-process
    run each process reads only its share (``ImageSource.for_host``) and embeds it itself.
    """
    private, reference = source.split(data.heldout)
    return private.for_host().load(), reference.load()


def embedder(name: str, checkpoint: str) -> "Embedder":
    """The embedding ``name`` with its ``checkpoint`` ("" for the embedder's default)."""
    from pe_jax import embeddings

    options = {}
    if checkpoint and name in embeddings.CONFIG_OPTIONS:
        options[embeddings.CONFIG_OPTIONS[name][1]] = checkpoint
    return embeddings.make_embedder(name, **options)


def noise_plan(privacy: ml_collections.ConfigDict, pe: ml_collections.ConfigDict
               ) -> tuple[float, "np.random.Generator | None"]:
    """The noise multiplier that spends ``privacy.epsilon`` in ``pe.iterations`` releases
    (0 for a non-private baseline), and the seeded noise generator (None: the CSPRNG)."""
    import numpy as np

    from pe_jax import privacy as dp

    if privacy.non_private:
        return 0.0, None
    rng = None if privacy.noise_seed == -1 else np.random.default_rng(privacy.noise_seed)
    return dp.noise_multiplier(privacy.epsilon, privacy.delta, pe.iterations, k=pe.k), rng


def pe_config(pe: ml_collections.ConfigDict, *, noise_multiplier: float, non_private: bool,
              num_classes: int) -> "PEConfig":
    """The ``PEConfig`` of the ``pe`` section: ``samples_per_class`` for each class, the
    degree of each iteration from ``degree_start``, ``degree_end`` and ``degree_schedule``,
    and every other key as the field of the same name."""
    from pe_jax import evolve

    fields = {field.name for field in dataclasses.fields(evolve.PEConfig)}
    passed = {key: pe[key] for key in pe if key not in PE_DERIVED}
    unknown = sorted(set(passed) - fields)
    if unknown:
        raise ValueError(f"pe.{unknown[0]} is not a setting of pe_jax.evolve.PEConfig")
    return evolve.PEConfig(
        **passed, noise_multiplier=noise_multiplier, non_private=non_private,
        samples_per_class=(pe.samples_per_class,) * num_classes,
        degrees=evolve.degree_schedule(pe.degree_start, pe.degree_end, pe.iterations,
                                       pe.degree_schedule))


def metric_callbacks(metrics: ml_collections.ConfigDict, *, iterations: int, out, generator,
                     reference: "LabelledImages") -> list:
    """The callbacks of ``pe_jax.metrics.callbacks.make_callbacks`` that the ``metrics``
    section asks for, measured against the held-out ``reference`` rows."""
    from pe_jax import embeddings
    from pe_jax.metrics.callbacks import make_callbacks

    options = {"metrics": metrics.names, "metrics_every": metrics.every,
               "metrics_k": metrics.k, "metrics_embedding": metrics.embedding,
               "tensorboard": metrics.tensorboard, "iterations": iterations}
    if metrics.checkpoint and metrics.embedding in embeddings.CONFIG_OPTIONS:
        options[embeddings.CONFIG_OPTIONS[metrics.embedding][0]] = metrics.checkpoint
    return make_callbacks(ml_collections.ConfigDict(options), out, generator=generator,
                          reference_images=reference.images,
                          reference_labels=reference.labels,
                          num_classes=reference.num_classes)
