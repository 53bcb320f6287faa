"""The sections of a ``pe-jax run`` config, their keys and default values.

A run config holds ``name`` and ``seed`` and one section per object the run builds:

* ``data``: the private data set and its fixed held-out split (``pe_jax.configs.build``);
* ``generator``: the public generator (``pe_jax.apis.factory.make_generator``);
* ``embedding``: the feature space PE votes in;
* ``pe``: Private Evolution's own settings (``pe_jax.evolve.PEConfig``);
* ``privacy``: the budget and the noise;
* ``metrics``: quality metrics on the held-out rows (not covered by DP).

``run_config(name, **sections)`` builds a complete config from the defaults below, changing
the given keys; every shipped config starts from it. Adding a setting to a section is one line
in ``DEFAULTS`` (a key of ``pe`` that is a field of ``PEConfig`` reaches it unchanged).
``RENAMED`` maps the keys of the old flat configs to their place in a section, so that
``--set epsilon=1`` can say ``privacy.epsilon``.
"""

from collections.abc import Mapping

import ml_collections

from pe_jax.data.digits import TUNING_HELDOUT

TOP_LEVEL = {"name": "run", "seed": 0}
"""Keys outside the sections: the run's name (its default output folder) and its JAX seed."""

DATA_SOURCES = ("sklearn_digits", "tfds", "idx", "fashion_mnist_debian", "npz", "folder")
"""The private data sets ``data.source`` may name (``pe_jax.configs.build.data_source``)."""

DEFAULTS = {
    "data": {
        "source": "sklearn_digits",  # one of DATA_SOURCES
        "name": "",  # tfds: the data set's name, e.g. "cifar10"
        "split": "train",  # tfds: a TFDS split; idx, fashion_mnist_debian: train or test
        "data_dir": "",  # tfds: the folder holding the data set prepared as array_record
        "path": "",  # idx: folder of MNIST-format files; fashion_mnist_debian: its folder
        #              ("" = Debian's); npz: the file; folder: root with a folder per class
        "class_names": [],  # tfds, npz: [] = the data set's own; idx: required
        # A key the chosen source does not read must stay at its default (validate.SOURCE_KEYS).
        # Fraction held out by a fixed hash of the row index (never by the seed): the real
        # reference rows of the metrics. They never vote.
        "heldout": TUNING_HELDOUT,
    },
    "generator": {
        "name": "glyphs",  # glyphs or diffusion (pe_jax.apis.factory.GENERATORS)
        "glyph_priors": None,  # glyphs: pose priors {parameter: {mean, std, low, high}}
        "prior": "",  # diffusion: a checkpoint folder; "" = the shipped digits prior
        "steps": 25,  # diffusion: respaced DDIM steps of random; variation runs degree * steps
        "guidance": 1.0,  # diffusion: classifier-free guidance scale (1: plain conditional)
    },
    "embedding": {
        "name": "pixels",  # pixels, random_projection, encoder or inception
        "checkpoint": "",  # encoder: "" = the shipped glyph encoder; inception: required
    },
    "pe": {
        "iterations": 10,  # T
        "samples_per_class": 100,
        "k": 1,
        "metric": "l2",
        "threshold": 0.0,  # H, subtracted from the noisy histogram
        "selection": "sample",
        "variation_folds": 1,
        "keep_selected": False,
        "keep": "parents",  # with keep_selected: "parents" or "top" (each class's top-voted)
        "threshold_sigmas": 0.0,  # a further threshold, in units of the noise's sigma
        "random_fraction": 0.0,  # share of each generation drawn fresh from random
        "lookahead": 0,  # L
        "degree_start": 0.6,
        "degree_end": 0.15,
        "degree_schedule": "geometric",
    },
    "privacy": {
        "epsilon": 4.0,  # the noise multiplier is calibrated so that T releases spend it
        "delta": 1e-5,
        # -1 draws the noise from the OS CSPRNG; a seed >= 0 from a seeded generator, for
        # reproducible research only: the run is then NOT differentially private.
        "noise_seed": -1,
        # true: a non-private baseline (clean histograms, no noise); the report says so.
        "non_private": False,
    },
    "metrics": {
        "names": "fid,precision_recall,accuracy",  # "" for none
        "every": 5,
        "k": 3,  # precision/recall neighbours
        "embedding": "encoder",  # feature space of FID and precision/recall
        "checkpoint": "",  # of that embedding, as embedding.checkpoint
        "tensorboard": False,
    },
}
"""Every key of every section, with its default."""

RENAMED = {
    "data": "data.source", "heldout": "data.heldout",
    "generator": "generator.name", "glyph_priors": "generator.glyph_priors",
    "prior": "generator.prior", "diffusion_steps": "generator.steps",
    "guidance": "generator.guidance",
    "embedding": "embedding.name", "encoder_checkpoint": "embedding.checkpoint",
    "inception_weights": "embedding.checkpoint",
    "epsilon": "privacy.epsilon", "delta": "privacy.delta",
    "noise_seed": "privacy.noise_seed", "non_private": "privacy.non_private",
    "metrics": "metrics.names", "metrics_every": "metrics.every", "metrics_k": "metrics.k",
    "metrics_embedding": "metrics.embedding", "tensorboard": "metrics.tensorboard",
    **{key: f"pe.{key}" for key in DEFAULTS["pe"]},
}
"""Each key of the old flat run config, and where it lives now."""


def section(which: str, /, **changes: object) -> ml_collections.ConfigDict:
    """The section ``which`` at its defaults, with ``changes``; unknown keys are refused."""
    if which not in DEFAULTS:
        raise ValueError(f"a run config has the sections {sorted(DEFAULTS)}; got {which!r}")
    extra = set(changes) - set(DEFAULTS[which])
    if extra:
        raise ValueError(f"section {which} has the keys {sorted(DEFAULTS[which])}; got "
                         f"{sorted(extra)}")
    return ml_collections.ConfigDict({**DEFAULTS[which], **changes})


def run_config(name: str, /, **sections: Mapping[str, object]) -> ml_collections.ConfigDict:
    """A complete run config named ``name``: every section at its defaults, with the keys
    given per section changed (``run_config("x", pe={"k": 2})``); unknown keys are refused."""
    unknown = set(sections) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"a run config has the sections {sorted(DEFAULTS)}; got "
                         f"{sorted(unknown)}")
    config = ml_collections.ConfigDict({**TOP_LEVEL, "name": name})
    for key in DEFAULTS:
        config[key] = section(key, **sections.get(key, {}))
    return config
