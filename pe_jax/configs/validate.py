"""Checks of a whole run config, made before any folder is created or any time is spent.

``validate_run_config(config)`` checks the run config's sections (``check_sections``: no
unknown or missing keys) and every setting ``pe-jax run`` reads: its type (an int
key refuses 2.5, a bool key refuses 1), its range, the names it must be one of, the checkpoint
folders it names, and whether the synthetic population fits in memory. Each refusal is one
ValueError that names the key, says what is allowed and what was given (the wording of
``pe_jax._checks``). The small checkers below (``check_real``, ``check_choice``,
``check_names``, ``check_bool``, ``check_checkpoint``, ``check_population_memory``) take the
key's name, so they serve nested sections (``"pe.samples_per_class"``) as well.
"""

import math
import numbers
import os
import pathlib
from collections.abc import Sequence

from pe_jax._checks import check_int, require

SAMPLE_BYTES_8X8 = 24 * 1024
"""Memory one synthetic sample of an 8x8 single-channel image takes during a run, about:
peak resident memory of ``pe-jax run`` grew by 23.2 KiB per sample from 20,000 to 80,000
samples (the population, its renders, embeddings, votes and the compiled step's buffers).
Larger images scale it by their pixel count."""

DATASET_SHAPES = {"sklearn_digits": ((8, 8, 1), 10)}
"""Image shape and class count of the data sets known without opening them, for the checks
that come before the data is read (other sources are checked once opened)."""

SOURCE_KEYS = {"sklearn_digits": (), "tfds": ("name", "split", "data_dir", "class_names"),
               "idx": ("path", "split", "class_names"), "fashion_mnist_debian": ("path", "split"),
               "npz": ("path", "class_names"), "folder": ("path",)}
"""The keys of the ``data`` section each source reads (besides ``source`` and ``heldout``);
a key it does not read must stay at its default, so that no setting is silently ignored."""

MAX_SEED = 2**63 - 1


def check_real(name: str, value: object, lo: float | None = None, hi: float | None = None,
               *, lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` as a finite float in the given range (bools refused)."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value))
    parts = ([f"> {lo}" if lo_open else f">= {lo}"] if lo is not None else []) + (
        [f"< {hi}" if hi_open else f"<= {hi}"] if hi is not None else [])
    allowed = "a finite number" + (f" {' and '.join(parts)}" if parts else "")
    require(ok, name, allowed, value)
    value = float(value)
    require((lo is None or (value > lo if lo_open else value >= lo))
            and (hi is None or (value < hi if hi_open else value <= hi)), name, allowed, value)
    return value


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool (``True``/``False``; 0 and 1 are refused)."""
    require(isinstance(value, bool), name, "true or false", value)
    return value


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``."""
    require(isinstance(value, str) and value in choices, name, f"one of {tuple(choices)}",
            value)
    return value


def check_names(name: str, value: object, choices: Sequence[str]) -> list[str]:
    """The comma-separated names of ``value`` ("" for none), each one of ``choices``."""
    require(isinstance(value, str), name, f"comma-separated names from {tuple(choices)}",
            value)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in choices]
    require(not unknown, name, f"comma-separated names from {tuple(choices)} (\"\" for none)",
            value)
    return names


def check_checkpoint(name: str, value: object, *, required: bool = False) -> str:
    """``value`` if it is "" (the default checkpoint; refused when ``required``) or a
    checkpoint folder holding ``metadata.json`` (``pe_jax.checkpoints``)."""
    require(isinstance(value, (str, os.PathLike)), name, "a checkpoint folder", value)
    if not str(value):
        require(not required, name, "a checkpoint folder (it has no default)", value)
        return str(value)
    path = pathlib.Path(value)
    require(path.is_dir(), name, "an existing checkpoint folder", str(value))
    require((path / "metadata.json").is_file(), name,
            "a checkpoint folder holding metadata.json", str(value))
    return str(value)


def available_memory() -> tuple[int, str]:
    """Bytes a run may use, and where: the host's available memory, or the local
    accelerators' total memory when that is smaller."""
    available, where = _host_available(), "host memory available"
    try:
        import jax

        limits = [(d.memory_stats() or {}).get("bytes_limit") for d in jax.local_devices()]
    except Exception:  # no backend to ask: the host figure stands
        limits = []
    if limits and all(limits) and sum(limits) < available:
        available, where = sum(limits), f"memory of the {len(limits)} local accelerator(s)"
    return available, where


def _host_available() -> int:
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_population_memory(name: str, per_class: int, num_classes: int,
                            image_shape: Sequence[int],
                            available: tuple[int, str] | None = None) -> int:
    """``per_class`` if ``per_class * num_classes`` synthetic samples of ``image_shape`` fit
    in memory (``SAMPLE_BYTES_8X8`` a sample, scaled by pixels); the error states the limit."""
    pixels = math.prod(image_shape)
    sample_bytes = SAMPLE_BYTES_8X8 * max(1.0, pixels / 64)
    limit, where = available if available is not None else available_memory()
    most = int(limit // (sample_bytes * num_classes))
    need = per_class * num_classes * sample_bytes
    require(per_class <= most, name,
            f"at most {most:,} here: {num_classes} classes of {per_class:,} samples need about "
            f"{need / 2**30:.1f} GiB (about {sample_bytes / 1024:.0f} KiB a sample of "
            f"{'x'.join(map(str, image_shape))} images), more than the {limit / 2**30:.1f} GiB "
            f"of {where}", per_class)
    return per_class


def check_sections(config) -> None:
    """``config`` has the run config's layout (``pe_jax.configs.sections``): ``name``,
    ``seed`` and the sections, each with all its keys and no others. A key of the old flat
    layout is refused with its new place; an unknown key with the nearest known one."""
    import difflib

    from pe_jax.configs.sections import DEFAULTS, RENAMED, TOP_LEVEL

    def unknown(key: str, known: Sequence[str], where: str) -> None:
        near = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
        hint = (f"; the flat key {key} is now {RENAMED[key]}" if where == "the config"
                and key in RENAMED else f"; did you mean {near[0]}?" if near else "")
        raise ValueError(f"{key} is not a key of {where}, which has {', '.join(known)}{hint}")

    top = [*TOP_LEVEL, *DEFAULTS]
    for key in config:
        if key not in top:
            unknown(key, top, "the config")
    for name, defaults in DEFAULTS.items():
        section = config.get(name)
        require(hasattr(section, "keys"), name, f"a section with the keys {', '.join(defaults)}",
                section)
        for key in section:
            if key not in defaults:
                unknown(key, list(defaults), f"section {name}")
        missing = [f"{name}.{key}" for key in defaults if key not in section]
        require(not missing, name, f"a section with all its keys (build configs with "
                f"pe_jax.configs.sections.run_config); it lacks {', '.join(missing)}", name)
    for key in TOP_LEVEL:
        require(key in config, key, "set (the config lacks it)", None)


def check_noise_seed(name: str, seed: object) -> None:
    """A noise seed: -1 (the CSPRNG: private) or an integer in [0, ``MAX_SEED``] (seeded:
    reproducible, NOT private)."""
    require(seed == -1 or not isinstance(seed, bool) and isinstance(seed, numbers.Integral)
            and 0 <= seed <= MAX_SEED, name, "-1 (the CSPRNG) or a seed in [0, 2**63 - 1]",
            seed)


def validate_run_config(config, available: tuple[int, str] | None = None) -> None:
    """Checks every setting ``pe-jax run`` reads (see the module docstring).

    ``available``: (bytes, where) for the memory check; default ``available_memory()``. The
    memory check needs the data set's shape: it is made here for the sources in
    ``DATASET_SHAPES``, and by ``pe-jax run`` once it has opened any other.
    """
    from pe_jax.metrics.callbacks import METRICS

    check_sections(config)
    data, pe, privacy = config.data, config.pe, config.privacy
    require(not isinstance(config.seed, bool) and isinstance(config.seed, numbers.Integral)
            and 0 <= config.seed <= MAX_SEED, "seed", "an integer in [0, 2**63 - 1]", config.seed)
    check_data(data)
    check_noise_seed("privacy.noise_seed", privacy.noise_seed)
    check_real("privacy.epsilon", privacy.epsilon, 0, lo_open=True)
    check_real("privacy.delta", privacy.delta, 0, 1, lo_open=True, hi_open=True)
    check_bool("privacy.non_private", privacy.non_private)
    per_class = check_pe(pe)
    # The shipped prior draws 8x8 digits: any other data set needs a prior of its own.
    check_generator(config.generator, prior_required=data.source != "sklearn_digits")
    check_embedding("embedding", config.embedding.name, config.embedding.checkpoint)
    metrics = config.metrics
    names = check_names("metrics.names", metrics.names, METRICS)
    check_int("metrics.every", metrics.every, 1)
    check_int("metrics.k", metrics.k, 1)
    check_bool("metrics.tensorboard", metrics.tensorboard)
    if {"fid", "precision_recall"} & set(names):
        check_embedding("metrics", metrics.embedding, metrics.checkpoint)
    shape = DATASET_SHAPES.get(data.source)
    if shape is not None:
        check_population_memory("pe.samples_per_class", per_class, shape[1], shape[0],
                                available)


def check_data(data) -> None:
    """The ``data`` section: a known source and the keys that source reads."""
    from pe_jax.configs.sections import DATA_SOURCES, DEFAULTS
    from pe_jax.data.digits import TUNING_HELDOUT

    source = check_choice("data.source", data.source, DATA_SOURCES)
    for key in ("name", "split", "data_dir", "path"):
        require(isinstance(data[key], str), f"data.{key}", "a string", data[key])
    require(isinstance(data.class_names, (list, tuple))
            and all(isinstance(n, str) and n for n in data.class_names), "data.class_names",
            "a list of class names ([] for the data set's own)", data.class_names)
    reads = SOURCE_KEYS[source]
    for key, default in DEFAULTS["data"].items():
        require(key in (*reads, "source", "heldout") or data[key] == default, f"data.{key}",
                f"left at {default!r}: data.source={source!r} reads only "
                f"{', '.join(f'data.{k}' for k in reads) or 'data.heldout'}", data[key])
    needs = {"tfds": ("name", "data_dir"), "idx": ("path", "class_names"), "npz": ("path",),
             "folder": ("path",)}
    for key in needs.get(source, ()):
        require(bool(data[key]), f"data.{key}", f"set for data.source={source!r}", data[key])
    folder = {"tfds": "data_dir", "idx": "path", "folder": "path", "fashion_mnist_debian": "path"}
    if source in folder and data[folder[source]]:
        require(os.path.isdir(data[folder[source]]), f"data.{folder[source]}",
                f"an existing folder for data.source={source!r}", data[folder[source]])
    if source == "npz":
        require(os.path.isfile(data.path), "data.path", "an existing .npz file", data.path)
    heldout = data.heldout
    if source == "sklearn_digits":
        require(isinstance(heldout, numbers.Real) and not isinstance(heldout, bool)
                and TUNING_HELDOUT <= heldout < 1, "data.heldout",
                f"a fraction in [{TUNING_HELDOUT}, 1): the digits that split({TUNING_HELDOUT}) "
                "holds out are public, since the shipped glyph priors, encoder and diffusion "
                "prior and the default threshold and degree schedule were tuned on them, so "
                "they can never be private", heldout)
    else:
        check_real("data.heldout", heldout, 0, 1, lo_open=True, hi_open=True)


def check_pe(pe) -> int:
    """The ``pe`` section; returns ``samples_per_class``."""
    from pe_jax import population, voting
    from pe_jax.evolve import DEGREE_SCHEDULES

    check_int("pe.iterations", pe.iterations, 1)
    per_class = check_int("pe.samples_per_class", pe.samples_per_class, 1)
    check_int("pe.k", pe.k, 1, per_class)
    check_choice("pe.metric", pe.metric, tuple(voting.METRICS))
    check_real("pe.threshold", pe.threshold, 0)
    check_choice("pe.selection", pe.selection, population.SELECTION_METHODS)
    check_int("pe.variation_folds", pe.variation_folds, 1, per_class)
    check_bool("pe.keep_selected", pe.keep_selected)
    check_int("pe.lookahead", pe.lookahead, 0)
    schedule = check_choice("pe.degree_schedule", pe.degree_schedule, DEGREE_SCHEDULES)
    for key in ("degree_start", "degree_end"):
        if schedule == "linear":
            check_real(f"pe.{key}", pe[key], 0.0, 1)
        else:
            check_real(f"pe.{key}", pe[key], 0, 1, lo_open=True)
    return per_class


def check_generator(generator, prior_required: bool = False) -> None:
    """The ``generator`` section: its name, and the keys that generator reads
    (``prior_required``: refuse ``prior = ""``, the shipped digits prior)."""
    from pe_jax.apis.factory import GENERATORS

    name = check_choice("generator.name", generator.name, GENERATORS)
    if name == "diffusion":
        check_checkpoint("generator.prior", generator.prior, required=prior_required)
        check_int("generator.steps", generator.steps, 1)
        check_real("generator.guidance", generator.guidance, 0)


def check_embedding(section: str, name: object, checkpoint: object) -> str:
    """An embedding name and its checkpoint (``<section>.embedding`` / ``.checkpoint``)."""
    from pe_jax import embeddings

    key = "embedding.name" if section == "embedding" else f"{section}.embedding"
    name = check_choice(key, name, tuple(embeddings.EMBEDDERS))
    if name in ("encoder", "inception"):
        check_checkpoint(f"{section}.checkpoint", checkpoint, required=name == "inception")
    return name
