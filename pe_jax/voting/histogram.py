"""The public entry points of the vote kernel: argument checks, defaults, layouts.

:func:`nn_histogram` does everything in one call.  A PE run lays its private rows out once
with :func:`prepare_private` and calls :func:`vote` every iteration, so the kernel compiles
once per run whatever the private class sizes.
"""

from __future__ import annotations

import types
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax import processes, sharding
from pe_jax._checks import check_int, require
from pe_jax.voting import bf16_probe
from pe_jax.voting.kernels import VoteKernel, get_kernel
from pe_jax.voting.layout import MAX_MAGNITUDE, PrivateBlocks, block_private, class_index
from pe_jax.voting.metrics import METRICS, LinearScore

__all__ = ["DEFAULT_TILES", "nn_histogram", "prepare_private", "vote"]

# Default (private_tile, synthetic_tile) per platform.  CPU: measured with
# experiments/bench_voting.py on a 2-core AVX-512 machine, where 512 x 4096
# (an 8 MiB score block) ran at 1.1-1.9x plain-matmul GFLOP/s and was the best
# of the tiles tried from 128 x 1024 to 4096 x 20000 (most within ~10 %).  Accelerators:
# larger blocks keep the matrix units busy (not measured here; override per call if needed).
DEFAULT_TILES: Mapping[str, tuple[int, int]] = types.MappingProxyType(
    {"cpu": (512, 4096), "gpu": (4096, 16384), "tpu": (4096, 16384)}
)

# screen=None screens from this (class size) * D on, where the hardware's bfloat16 matmuls
# pay (pe_jax.voting.bf16_probe).  Below it the screen's fixed costs lose even there:
# measured on a 2-core CPU with AMX-BF16, screened over float32 time: 1.0-1.33 at
# (10k, 2k, 64), 0.91 at (20k, 10k, 32), 0.75 at (20k, 10k, 64), 0.65-0.70 at D = 512.
_SCREEN_MIN_SIZE = 2**18

# Counts are int32; a bin gets at most one vote per private row.
_MAX_PRIVATE_ROWS = 2**31 - 1


def _default_screen(n_syn: int, dim: int, metric: str = "l2",
                    mesh: jax.sharding.Mesh | None = None) -> bool:
    """Whether ``screen=None`` screens classes of ``n_syn`` rows of ``D = dim`` features.

    Only where the screen can apply (a :class:`LinearScore` metric), from
    ``n_syn * D >= _SCREEN_MIN_SIZE`` on, and where the device's bfloat16 matmuls pay:
    :func:`pe_jax.voting.bf16_probe.bf16_pays`, a probe timed once per process and device
    kind (or pinned by ``PE_JAX_BF16_SCREEN``).  Never from size alone.
    """
    if not isinstance(METRICS[metric], LinearScore) or n_syn * dim < _SCREEN_MIN_SIZE:
        return False  # no probe for problems the screen cannot help
    device = jax.devices()[0] if mesh is None else mesh.devices.flat[0]
    return bf16_probe.bf16_pays(device, DEFAULT_TILES[_platform(mesh)])


def _as_matrix(name: str, a) -> jax.Array:
    """``a`` as a 2-D real array; host integers and float64 become float32 on the host,
    where NumPy rounds them (JAX without x64 would wrap int64 above 2**31 instead)."""
    if not isinstance(a, jax.Array):
        a = np.asarray(a)
        if a.dtype.kind not in "iuf":
            raise ValueError(f"{name} must be a real numeric array, got dtype {a.dtype}")
        if a.dtype.itemsize > 4 or a.dtype.kind != "f":
            with np.errstate(over="ignore"):  # beyond float32: inf, a row that cannot vote
                a = a.astype(np.float32)
        a = jnp.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows, features), got shape {a.shape}")
    if not (jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.integer)):
        raise ValueError(f"{name} must have a real numeric dtype, got {a.dtype}")
    return a


def _platform(mesh: jax.sharding.Mesh | None) -> str:
    platform = sharding.platform(mesh)
    return platform if platform in DEFAULT_TILES else "gpu"


def _labels(name: str, labels, n: int) -> np.ndarray | jax.Array:
    """Integer labels of shape ``(n,)`` (host or traced)."""
    if not isinstance(labels, jax.Array):
        labels = np.asarray(labels)
    require(labels.shape == (n,), name, f"an array of shape ({n},), one label per row",
            f"shape {labels.shape}")
    require(jnp.issubdtype(labels.dtype, jnp.integer), name, "integers", labels.dtype)
    return labels


def prepare_private(private, labels=None, *, num_classes: int = 1,
                    private_tile: int | None = None,
                    mesh: jax.sharding.Mesh | None = None) -> PrivateBlocks:
    """Lays out private embeddings ``(N_priv, D)`` for :func:`vote` (see ``voting.layout``).

    ``labels`` are ints in ``[0, num_classes)`` (None: one class).  Concrete labels outside
    that range are a ``ValueError`` (the message counts them; it never shows values);
    traced ones give their rows zero votes, as do rows with a NaN/Inf entry or an entry
    above ``MAX_MAGNITUDE`` in absolute value.
    """
    devices = sharding.device_count(mesh)
    private = _as_matrix("private", private)
    n = private.shape[0]
    require(n <= _MAX_PRIVATE_ROWS, "private", f"at most {_MAX_PRIVATE_ROWS} rows (int32 counts)",
            f"{n} rows")
    num_classes = check_int("num_classes", num_classes, 1)
    if labels is None:
        require(num_classes == 1, "labels", "given when num_classes > 1", None)
        labels = jnp.zeros((n,), jnp.int32)
    labels = _labels("private_labels", labels, n)
    if not isinstance(labels, jax.core.Tracer):
        outside = int(np.sum((np.asarray(labels) < 0) | (np.asarray(labels) >= num_classes)))
        require(outside == 0, "private_labels", f"ints in [0, {num_classes})",
                f"{outside} labels outside that range")
    default_tile = DEFAULT_TILES[_platform(mesh)][0]
    tile = check_int("private_tile", default_tile if private_tile is None else private_tile, 1)
    layout = lambda: block_private(private, jnp.asarray(labels), num_classes=num_classes,  # noqa: E731
                                   tile=tile, devices=devices)
    if isinstance(private, jax.core.Tracer):
        return layout()
    if sharding.spans_processes(mesh):
        return _blocks_of_process_shares(private, labels, num_classes, tile, mesh)
    with sharding.use(mesh):  # explicit axes: a sharded input needs the mesh in context
        return sharding.shard_rows(layout(), mesh)  # each device keeps its own blocks


def _blocks_of_process_shares(private: jax.Array, labels, num_classes: int, tile: int,
                              mesh: jax.sharding.Mesh) -> PrivateBlocks:
    """A multi-process run's blocks, from this process's share of the private rows.

    Every process pads its share to the largest one (padding rows get no votes) and lays it
    out in the same number of blocks, split over its own devices; the global blocks are the
    processes' blocks in process order. A row's votes depend on that row alone, so the vote
    equals that of all the rows laid out in one process.
    """
    rows, dim = private.shape
    pad = processes.max_over_processes(rows) - rows
    padded = np.concatenate([np.asarray(private, np.float32), np.zeros((pad, dim), np.float32)])
    padded_labels = np.concatenate([np.asarray(labels, np.int32),
                                    np.full((pad,), num_classes, np.int32)])  # left out
    blocks = block_private(jnp.asarray(padded), jnp.asarray(padded_labels),
                           num_classes=num_classes, tile=tile,
                           devices=sharding.local_device_count(mesh))
    return sharding.from_process_shares(blocks, mesh)


def synthetic_classes(synthetic_labels, n_syn: int, k: int) -> np.ndarray:
    """The ``(C, S)`` class table of public ``synthetic_labels`` (None: one class).

    Every class ``0..C-1`` (``C = max label + 1``) must have at least ``k`` rows.
    """
    if synthetic_labels is None:
        return np.arange(n_syn, dtype=np.int32)[None]
    require(not isinstance(synthetic_labels, jax.core.Tracer), "synthetic_labels",
            "a concrete (not traced) array: they fix the kernel's shapes", "a traced array")
    labels = np.asarray(_labels("synthetic_labels", synthetic_labels, n_syn))
    require(labels.min() >= 0, "synthetic_labels", "ints >= 0", int(labels.min()))
    sizes = np.bincount(labels)
    require(sizes.min() >= k, "synthetic_labels", f"at least k = {k} rows in every class 0..C-1",
            f"class sizes {sizes.tolist()}")
    return class_index(labels, len(sizes))


def vote(blocks: PrivateBlocks, synthetic, classes, *, k: int = 1, metric: str = "l2",
         mesh: jax.sharding.Mesh | None = None, synthetic_tile: int | None = None,
         screen: bool | None = None, kernel: str | VoteKernel = "exact") -> jax.Array:
    """``(N_syn,)`` int32 vote counts of laid-out private rows over ``synthetic (N_syn, D)``.

    ``classes`` is the ``(C, S)`` table of each class's synthetic positions
    (``voting.layout.class_index``; -1 pads); ``blocks`` must have been laid out for the
    same number of classes and, with ``mesh``, the same device count.  Other arguments as
    in :func:`nn_histogram`.
    """
    vote_kernel = get_kernel(kernel)
    synthetic = _as_matrix("synthetic", synthetic)
    n_syn, dim = synthetic.shape
    require(n_syn >= 1, "synthetic", "at least one row (N_syn >= 1)", 0)
    require(dim >= 1, "synthetic", "at least one feature column (D >= 1)", 0)
    require(blocks.rows.shape[2] == dim, "private and synthetic",
            "embeddings of the same feature dimension D",
            f"private D = {blocks.rows.shape[2]}, synthetic D = {dim}")
    classes = jnp.asarray(classes, jnp.int32)
    require(classes.ndim == 2, "classes", "a (C, S) table", f"shape {classes.shape}")
    require(metric in METRICS, "metric", f"one of {tuple(METRICS)}", metric)
    k = check_int("k", k, 1, classes.shape[1])
    if not isinstance(classes, jax.core.Tracer):
        smallest = int(jnp.min(jnp.sum(classes >= 0, axis=1)))
        require(smallest >= k, "k", f"at most the smallest class's synthetic rows ({smallest})", k)
    require(screen is None or isinstance(screen, bool), "screen", "True, False or None", screen)
    vote_kernel.check(metric, k, screen)
    devices = sharding.device_count(mesh)
    if screen is None:
        screen = vote_kernel.screens and _default_screen(classes.shape[1], dim, metric, mesh)
    require(blocks.rows.shape[0] % devices == 0, "blocks",
            f"laid out for the mesh's {devices} devices (prepare_private(..., mesh=mesh))",
            f"{blocks.rows.shape[0]} blocks")
    default_tile = DEFAULT_TILES[_platform(mesh)][1]
    synthetic_tile = check_int(
        "synthetic_tile", default_tile if synthetic_tile is None else synthetic_tile, 1)
    if not isinstance(synthetic, jax.core.Tracer):
        require(bool(jnp.all(jnp.abs(synthetic.astype(jnp.float32)) <= MAX_MAGNITUDE)),
                "synthetic", f"finite embeddings of magnitude <= MAX_MAGNITUDE ({MAX_MAGNITUDE:g})",
                "NaN, Inf or larger values")
    call = lambda: vote_kernel.counts(  # noqa: E731
        blocks, synthetic, classes, k=k, metric=metric, mesh=mesh, synthetic_tile=synthetic_tile,
        screen=screen)
    if isinstance(synthetic, jax.core.Tracer):
        return call()
    with sharding.use(mesh):  # explicit axes: resharding needs the mesh in context
        return call()


def nn_histogram(private, synthetic, *, k: int = 1, metric: str = "l2", private_labels=None,
                 synthetic_labels=None, mesh: jax.sharding.Mesh | None = None,
                 private_tile: int | None = None, synthetic_tile: int | None = None,
                 screen: bool | None = None, kernel: str | VoteKernel = "exact") -> jax.Array:
    """Clean nearest-neighbour vote counts of ``private`` over ``synthetic``.

    Each usable private row votes once for each of its ``k`` nearest synthetic rows (k
    distinct indices; among equal scores the LOWEST index wins).  The counts are int32;
    the release applies the weight ``1/sqrt(k)`` that gives one row's votes L2 norm 1.

    Invariant: a private row's votes are a function of that row and the synthetic set
    (and labels) only -- never of the number of private rows, the other rows, the block
    they fall in, the mesh, or whether the screen decided them.  Every block has the same
    compiled shape (``pe_jax.voting.layout``) and every float32 vote comes from one
    scoring site (``pe_jax.voting.kernel``).

    What "exact" means: the k nearest by the float32 value of the metric's score.  For
    l2 that is ``||z~||^2 - 2 x~.z~`` of rows centred on the class's synthetic mean
    (``x~ = x - m``), which differs from the true squared distance minus ``||x~||^2`` by
    at most about ``(D + 2) 2^-24 (2 ||x~|| ||z~|| + ||z~||^2)`` plus the rounding of
    ``x - m`` (none where ``x`` and ``m`` are within a factor 2 of each other).  Two
    synthetic rows closer than that in score may be ordered either way; all others are
    ordered as in exact arithmetic on the float32 inputs.  Centring keeps this small when
    features share a large offset.  cosine and inner_product are scored uncentred.

    Args:
      private: ``(N_priv, D)`` embeddings (any real dtype; scored in float32).  Rows with a
        NaN/Inf entry or an entry above ``MAX_MAGNITUDE`` (about 1.1e15) in absolute value
        get zero votes; an empty private set gives zeros.
      synthetic: ``(N_syn, D)`` finite embeddings of magnitude at most ``MAX_MAGNITUDE``.
      k: neighbours per row, ``1 <= k <=`` the smallest class.
      metric: a name in :data:`METRICS` (``l2``, ``cosine``, ``inner_product``).
      private_labels, synthetic_labels: both or neither.  With labels (ints, classes
        ``0..C-1`` with ``C = max(synthetic_labels) + 1``), a private row votes only among
        the synthetic rows of its own class; each class needs at least k synthetic rows.
      mesh: optional mesh; private blocks are split over all of its devices
        (``pe_jax.sharding``) and the per-device counts summed with ``psum``.  Inside an
        outer ``jit`` with an Explicit-axis mesh, trace under ``jax.set_mesh(mesh)``.
      private_tile: private rows per block; ``None`` takes the platform default from
        :data:`DEFAULT_TILES`.
      synthetic_tile: maximum synthetic rows per block; ``None`` takes the platform default.
      screen: for the built-in metrics, rank every block with bfloat16 matmuls first and
        rescore in float32 only the rows whose ranking the rounding could change
        (``pe_jax.voting.bf16_screen``).  The votes are the same either way; only speed
        differs.  ``None`` screens when (class size) x D >= 2**18 and the device's
        bfloat16 matmuls are clearly faster than its float32 ones, as timed once per
        process and device kind (``pe_jax.voting.bf16_probe``; the environment variable
        ``PE_JAX_BF16_SCREEN=1``/``0`` pins that answer); ``True`` always, ``False`` never.
        Only kernels that declare ``screens`` (``"exact"``) take it.
      kernel: a name in :data:`pe_jax.voting.KERNELS` or a :class:`VoteKernel`
        (``pe_jax.voting.kernels``).  ``"exact"`` (the default) is the kernel described
        above; others may support fewer metrics or k, and those declared ``exact=False``
        may vote otherwise than the float32 k nearest (``"approx"``, ``"pallas_l2"``).
        Every kernel keeps the invariant above, so the sensitivity is the same.

    Returns:
      ``(N_syn,)`` int32 counts.
    """
    get_kernel(kernel)  # an unknown name fails before anything is laid out
    require((private_labels is None) == (synthetic_labels is None), "private_labels and "
            "synthetic_labels", "both given or both None",
            "only private_labels" if synthetic_labels is None else "only synthetic_labels")
    synthetic = _as_matrix("synthetic", synthetic)
    require(synthetic.shape[0] >= 1, "synthetic", "at least one row (N_syn >= 1)", 0)
    k = check_int("k", k, 1, synthetic.shape[0])
    classes = synthetic_classes(synthetic_labels, synthetic.shape[0], k)
    blocks = prepare_private(private, private_labels, num_classes=classes.shape[0],
                             private_tile=private_tile, mesh=mesh)
    return vote(blocks, synthetic, classes, k=k, metric=metric, mesh=mesh,
                synthetic_tile=synthetic_tile, screen=screen, kernel=kernel)
