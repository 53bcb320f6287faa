"""Meshes and shardings: the one place for pe_jax's data-parallel conventions.

pe_jax parallelises over rows only (there is no model parallelism anywhere), so it has a
single convention for every mesh it is given:

* **Rows are split over every axis of the mesh.** Private embeddings, the synthetic
  population, embedding batches, diffusion batches and training batches all put their leading
  (row) axis over all of the mesh's devices at once -- ``P("data")`` on the usual one-axis
  mesh, ``P(("a", "b"))`` on a two-axis one -- in the mesh's device order. Every axis is a data
  axis; :func:`local_mesh` builds the usual one, named :data:`DATA_AXIS`, over one process's
  devices, and :func:`global_mesh` over every process's (a multi-process run, where the
  eager helpers place each process's own pieces of a value that all processes hold alike).
* **Everything else is replicated**: model parameters, the vote histogram, the synthetic
  embeddings each device votes over, scalars and keys.
* **Compiled code sees Auto axes.** Model code (the UNet, the encoder, the glyph renderer)
  carries no sharding annotations, so pe_jax's jitted functions lay out their arrays by
  sharding constraints and let XLA's GSPMD propagation do the rest. A mesh with Explicit axes
  (``jax.make_mesh``'s default) is accepted everywhere; code that traces a model uses its
  :func:`auto` view (same devices, same axis names), and eager code that hands arrays to an
  Explicit-axis computation enters the mesh with :func:`use`.

In the PE step (``pe_jax.step``) this means: the population is sharded over the devices for
generation (random, variation, rendering) and embedding, and its embeddings are gathered
(replicated) for the vote, where each device scores its own shard of the private blocks and a
``psum`` adds the integer counts (``pe_jax.voting.kernel``). A row's computation is the same
on every device, so the results do not depend on the device count (tested bitwise on 8 CPU
devices against 1 in ``tests/multidevice/test_step_sharded.py``, with the glyph generator);
a generator whose float kernels round differently with the rows per device, such as the
diffusion UNet's convolutions on XLA:CPU, agrees only to that rounding (about 1e-7).

Helpers work on single arrays or pytrees, eagerly (``jax.device_put``) and inside ``jax.jit``
(``jax.lax.with_sharding_constraint``); ``mesh=None`` means one device and makes each helper
the identity.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeVar

import jax
import numpy as np

from pe_jax._checks import check_int, require

__all__ = ["DATA_AXIS", "auto", "data_sharding", "device_count", "even_devices",
           "explicit_context", "from_process_shares", "global_mesh", "is_explicit",
           "local_device_count", "local_mesh", "platform", "replicate", "replicated",
           "row_spec", "shard_rows", "spans_processes", "use"]

DATA_AXIS = "data"
"""The name of the one axis of :func:`local_mesh`."""

Tree = TypeVar("Tree")


def _check_mesh(mesh: Any) -> None:
    require(mesh is None or isinstance(mesh, jax.sharding.Mesh), "mesh",
            "a jax.sharding.Mesh or None", type(mesh).__name__)


def local_mesh(devices: int | None = None) -> jax.sharding.Mesh:
    """A one-axis (:data:`DATA_AXIS`) mesh with Auto axis type over this process's devices.

    ``devices``: how many of them, first ones first (default: all). A single device still
    gives a mesh (of size 1), so callers need no special case; results on it equal those of
    ``mesh=None``.
    """
    available = jax.local_devices()
    count = len(available) if devices is None else check_int(
        "devices", devices, 1, len(available))
    return jax.sharding.Mesh(np.asarray(available[:count]), (DATA_AXIS,),
                             axis_types=(jax.sharding.AxisType.Auto,))


def global_mesh() -> jax.sharding.Mesh:
    """A one-axis (:data:`DATA_AXIS`) mesh with Auto axis type over every device of every
    process (``jax.devices()``, in its order: process by process).

    The mesh of a multi-process run (``jax.distributed.initialize`` first): rows are split
    over all devices of all hosts, exactly as :func:`local_mesh` splits them over one host's,
    so a run on it computes the same rows the same way. In a single process it equals
    ``local_mesh()``. Arrays on it that span other processes' devices are global arrays:
    ``jax.device_put`` of a value that is identical on every process places it, and
    ``jax.experimental.multihost_utils.process_allgather`` brings a sharded one back whole.
    """
    return jax.sharding.Mesh(np.asarray(jax.devices()), (DATA_AXIS,),
                             axis_types=(jax.sharding.AxisType.Auto,))


def even_devices(rows: int, available: int) -> int:
    """The most of ``available`` devices that split ``rows`` evenly (at least 1).

    E.g. 1000 rows on 8 devices: 8; on 6 devices: 5; on 3: 2.
    """
    check_int("rows", rows, 1)
    check_int("available", available, 1)
    return max(d for d in range(1, available + 1) if rows % d == 0)


def spans_processes(mesh: jax.sharding.Mesh | None) -> bool:
    """Whether ``mesh`` has devices of other processes (a multi-process run's mesh)."""
    _check_mesh(mesh)
    return mesh is not None and any(
        d.process_index != jax.process_index() for d in mesh.devices.flat)


def local_device_count(mesh: jax.sharding.Mesh | None) -> int:
    """How many of ``mesh``'s devices belong to this process (1 without a mesh)."""
    _check_mesh(mesh)
    return 1 if mesh is None else sum(
        d.process_index == jax.process_index() for d in mesh.devices.flat)


def device_count(mesh: jax.sharding.Mesh | None) -> int:
    """How many devices rows are split over: all of the mesh's (1 without a mesh)."""
    _check_mesh(mesh)
    return 1 if mesh is None else mesh.size


def is_explicit(mesh: jax.sharding.Mesh | None) -> bool:
    """Whether ``mesh`` has Explicit axes (then its sharded arrays need it in context)."""
    _check_mesh(mesh)
    return mesh is not None and jax.sharding.AxisType.Explicit in mesh.axis_types


def explicit_context() -> bool:
    """Whether the code runs under ``jax.set_mesh`` of a mesh with Explicit axes."""
    mesh = jax.sharding.get_abstract_mesh()
    return not mesh.empty and jax.sharding.AxisType.Explicit in mesh.axis_types


def auto(mesh: jax.sharding.Mesh | None) -> jax.sharding.Mesh | None:
    """The mesh with every axis Auto (same devices and axis names); None stays None.

    What compiled model code uses: sharding constraints over it guide GSPMD propagation
    without the sharding-in-types rules of Explicit axes.
    """
    _check_mesh(mesh)
    if mesh is None or all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types):
        return mesh
    return jax.sharding.Mesh(mesh.devices, mesh.axis_names,
                             axis_types=(jax.sharding.AxisType.Auto,) * len(mesh.axis_names))


@contextlib.contextmanager
def use(mesh: jax.sharding.Mesh | None) -> Iterator[None]:
    """``jax.set_mesh(mesh)`` for a mesh with Explicit axes, nothing otherwise.

    Eager code that passes arrays sharded over Explicit axes to a computation (or reshards
    them) needs the mesh in context; Auto axes and ``None`` need nothing.
    """
    if is_explicit(mesh):
        with jax.set_mesh(mesh):
            yield
    else:
        yield


def platform(mesh: jax.sharding.Mesh | None) -> str:
    """The platform (``"cpu"``, ``"gpu"``, ``"tpu"``, ...) that ``mesh`` (or, for None, the
    default backend) computes on."""
    _check_mesh(mesh)
    return jax.default_backend() if mesh is None else mesh.devices.flat[0].platform


def row_spec(mesh: jax.sharding.Mesh) -> jax.sharding.PartitionSpec:
    """The partition spec of rows: the leading axis over all of the mesh's axes."""
    names = mesh.axis_names
    return jax.P(names[0] if len(names) == 1 else tuple(names))


def data_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """Rows (the leading axis) split over all of ``mesh``'s devices; other axes whole."""
    return jax.NamedSharding(mesh, row_spec(mesh))


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """A whole copy on each of ``mesh``'s devices."""
    return jax.NamedSharding(mesh, jax.P())


def _traced(tree: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


def _place(tree: Tree, shardings: Any) -> Tree:
    """``device_put`` eagerly, ``with_sharding_constraint`` under a trace."""
    if _traced(tree):
        return jax.lax.with_sharding_constraint(tree, shardings)
    if jax.process_count() > 1:
        return jax.tree.map(_global_put, tree, shardings)
    return jax.device_put(tree, shardings)


def _global_put(leaf: Any, sharding: jax.sharding.Sharding) -> Any:
    """``leaf`` placed by ``sharding`` in a multi-process run, from its local copy.

    The leaf must be the same on every process (e.g. computed from the same key, or noise
    broadcast from process 0): each process places only the pieces its own devices hold, so
    nothing travels between hosts. ``jax.device_put`` refuses an array already committed to
    a local device, which this accepts, PRNG key arrays included.
    """
    if sharding.is_fully_addressable:
        return jax.device_put(leaf, sharding)
    if not isinstance(leaf, jax.Array):
        leaf = np.asarray(leaf)
    shape = np.shape(leaf)
    pieces = [jax.device_put(leaf[index], device)
              for device, index in sharding.addressable_devices_indices_map(shape).items()]
    return jax.make_array_from_single_device_arrays(shape, sharding, pieces)


def shard_rows(tree: Tree, mesh: jax.sharding.Mesh | None) -> Tree:
    """Every leaf's leading axis split over ``mesh``'s devices (scalars replicated).

    Eagerly the leaves are placed there; inside ``jax.jit`` it is a sharding constraint.
    Leading axes must be multiples of the device count (``ValueError`` otherwise).
    """
    if mesh is None:
        return tree
    devices = device_count(mesh)
    rows = data_sharding(mesh)

    def sharding(leaf: Any) -> jax.sharding.NamedSharding:
        if np.ndim(leaf) == 0:
            return replicated(mesh)
        length = np.shape(leaf)[0]
        require(length % devices == 0, "rows", f"a multiple of the mesh's {devices} devices "
                "to be split over them", f"an array of shape {np.shape(leaf)}")
        return rows

    return _place(tree, jax.tree.map(sharding, tree))


def from_process_shares(tree: Tree, mesh: jax.sharding.Mesh) -> Tree:
    """Global arrays whose rows are every process's local leaves, in process order.

    Each process passes its own share (same shapes on every process, leading axes a
    multiple of its devices on ``mesh``); its rows stay on its own devices.
    """
    rows = data_sharding(mesh)
    return jax.tree.map(lambda leaf: jax.make_array_from_process_local_data(
        rows, np.asarray(leaf)), tree)


def replicate(tree: Tree, mesh: jax.sharding.Mesh | None) -> Tree:
    """Every leaf whole on each of ``mesh``'s devices: the gather after sharded work.

    Eagerly the leaves are placed there; inside ``jax.jit`` it is a sharding constraint.
    """
    if mesh is None:
        return tree
    return _place(tree, jax.tree.map(lambda _: replicated(mesh), tree))
