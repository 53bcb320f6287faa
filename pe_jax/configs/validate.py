"""Checks of a whole run config, made before any folder is created or any time is spent.

``validate_run_config(config)`` checks every setting ``pe-jax run`` reads: its type (an int
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
"""Image shape and class count of each data set ``pe-jax run`` knows, for the checks that
must come before the data is read."""

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


def validate_run_config(config, available: tuple[int, str] | None = None) -> None:
    """Checks every setting ``pe-jax run`` reads (see the module docstring).

    ``available``: (bytes, where) for the memory check; default ``available_memory()``.
    """
    from pe_jax import embeddings, population, voting
    from pe_jax.apis.factory import GENERATORS
    from pe_jax.evolve import DEGREE_SCHEDULES
    from pe_jax.metrics.callbacks import METRICS

    get = config.get
    check_choice("data", config.data, tuple(DATASET_SHAPES))
    image_shape, num_classes = DATASET_SHAPES[config.data]
    require(not isinstance(config.seed, bool) and isinstance(config.seed, numbers.Integral)
            and 0 <= config.seed <= MAX_SEED, "seed", "an integer in [0, 2**63 - 1]", config.seed)
    noise_seed = get("noise_seed", -1)
    require(noise_seed == -1 or not isinstance(noise_seed, bool)
            and isinstance(noise_seed, numbers.Integral) and 0 <= noise_seed <= MAX_SEED,
            "noise_seed", "-1 (the CSPRNG) or a seed in [0, 2**63 - 1]", noise_seed)
    check_real("epsilon", config.epsilon, 0, lo_open=True)
    check_real("delta", config.delta, 0, 1, lo_open=True, hi_open=True)
    check_int("iterations", config.iterations, 1)
    per_class = check_int("samples_per_class", config.samples_per_class, 1)
    check_int("k", config.k, 1, per_class)
    check_choice("metric", config.metric, tuple(voting.METRICS))
    check_real("threshold", config.threshold, 0)
    check_choice("selection", config.selection, population.SELECTION_METHODS)
    check_int("variation_folds", config.variation_folds, 1, per_class)
    check_bool("keep_selected", config.keep_selected)
    check_int("lookahead", config.lookahead, 0)
    schedule = check_choice("degree_schedule", config.degree_schedule, DEGREE_SCHEDULES)
    low = 0.0 if schedule == "linear" else None
    for key in ("degree_start", "degree_end"):
        if low is None:
            check_real(key, config[key], 0, 1, lo_open=True)
        else:
            check_real(key, config[key], low, 1)
    generator = check_choice("generator", config.generator, GENERATORS)
    if generator == "diffusion":
        check_checkpoint("prior", get("prior", ""))
        check_int("diffusion_steps", config.diffusion_steps, 1)
        check_real("guidance", config.guidance, 0)
    spaces = [check_choice("embedding", config.embedding, tuple(embeddings.EMBEDDERS))]
    metrics = check_names("metrics", get("metrics", ""), METRICS)
    check_int("metrics_every", get("metrics_every", 1), 1)
    check_int("metrics_k", get("metrics_k", 3), 1)
    check_bool("tensorboard", get("tensorboard", False))
    check_bool("non_private", get("non_private", False))
    space = check_choice("metrics_embedding", get("metrics_embedding", "encoder"),
                         tuple(embeddings.EMBEDDERS))
    if {"fid", "precision_recall"} & set(metrics):
        spaces.append(space)
    if "encoder" in spaces:
        check_checkpoint("encoder_checkpoint", get("encoder_checkpoint", ""))
    if "inception" in spaces:
        check_checkpoint("inception_weights", get("inception_weights", ""), required=True)
    check_population_memory("samples_per_class", per_class, num_classes, image_shape,
                            available)
