"""Saving and loading Flax NNX models as orbax checkpoints, with a JSON metadata file.

A checkpoint is a folder: ``state/`` holds the model's arrays (orbax, no pickle, so loading
never runs code) and ``metadata.json`` says what the arrays are for (the config that builds the
model, the data and command that trained it); ``checksums.json`` holds the sha256 of each array
(checkpoints written before it existed have none). ``restore`` fills a model built from that
config, so the same path loads the checkpoints shipped with pe_jax and the ones users bring,
and checks what it read: every array's shape and dtype, that it is finite, and its checksum;
a damaged or truncated file is one ValueError that names the checkpoint and the array.
"""

import json
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

STATE_DIR = "state"
METADATA_FILE = "metadata.json"
CHECKSUMS_FILE = "checksums.json"


def save(directory: str | pathlib.Path, model: nnx.Module, metadata: dict[str, Any]
         ) -> pathlib.Path:
    """Writes ``model``'s state and ``metadata`` (JSON-serialisable) to a new folder.

    Refuses a folder that exists and is not empty, so no earlier checkpoint is overwritten.
    """
    directory = pathlib.Path(directory).absolute()
    if directory.exists() and any(directory.iterdir()):
        raise ValueError(f"checkpoint directory must be new or empty; {str(directory)!r} is "
                         "not empty")
    text = json.dumps(metadata, indent=2, sort_keys=True)  # fail before writing any arrays
    directory.mkdir(parents=True, exist_ok=True)
    state = nnx.state(model)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory / STATE_DIR, state)
    checksums = _checksums(state)
    if checksums is not None:
        (directory / CHECKSUMS_FILE).write_text(json.dumps(checksums, indent=1) + "\n")
    (directory / METADATA_FILE).write_text(text + "\n")
    return directory


def _checksums(state: Any) -> dict[str, str] | None:
    """sha256 of each array's bytes by its path in the state; None when some array is not
    fully on this host (a multi-host checkpoint is checked for finiteness only)."""
    import hashlib

    import numpy as np

    sums = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return None
        sums[_array_name(path)] = hashlib.sha256(
            np.ascontiguousarray(np.asarray(leaf)).tobytes()).hexdigest()
    return sums


def load_metadata(directory: str | pathlib.Path) -> dict[str, Any]:
    """The metadata written with a checkpoint (read it first to build the matching model)."""
    path = pathlib.Path(directory) / METADATA_FILE
    if not path.is_file():
        raise ValueError(f"checkpoint directory must contain {METADATA_FILE}; "
                         f"{str(directory)!r} does not")
    try:
        metadata = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"checkpoint metadata {str(path)!r} must be a JSON object; it cannot "
                         f"be read: {_first_line(error)}") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"checkpoint metadata {str(path)!r} must be a JSON object; "
                         f"got a {type(metadata).__name__}")
    return metadata


def restore(directory: str | pathlib.Path, model: nnx.Module) -> dict[str, Any]:
    """Loads a checkpoint's arrays into ``model`` in place; returns its metadata.

    ``model`` must have the structure of the saved one (build it from the metadata's config);
    a missing, extra or differently shaped array raises ValueError naming the checkpoint.
    """
    directory = pathlib.Path(directory).absolute()
    metadata = load_metadata(directory)
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # not the saved device
    target = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype,
                                                            sharding=here), nnx.state(model))
    if not (directory / STATE_DIR).is_dir():
        raise ValueError(f"checkpoint {str(directory)!r} must hold its arrays in {STATE_DIR}/; "
                         "it has none")
    try:
        with _this_process_checkpointer() as checkpointer:
            state = checkpointer.restore(directory / STATE_DIR, target)
    except (ValueError, KeyError, FileNotFoundError) as error:
        raise ValueError(f"checkpoint {str(directory)!r} does not match the model: "
                         f"{_first_line(error)}") from error
    except Exception as error:  # tensorstore / orbax: truncated or unreadable array files
        raise ValueError(f"checkpoint {str(directory)!r}: the array files in {STATE_DIR}/ "
                         f"cannot be read (damaged or incomplete?): {_first_line(error, True)}"
                         ) from error
    _check_arrays(directory, target, state)
    _check_checksums(directory, state)
    nnx.update(model, state)
    return metadata


def _this_process_checkpointer() -> ocp.StandardCheckpointer:
    """A checkpointer that reads on this process alone, with no collective: in a
    multi-process run each process loads the public models it needs by itself (process 0,
    say, the metrics' encoder), whole, onto its own devices."""
    me = jax.process_index()
    return ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
        primary_host=me, active_processes={me}))


def _check_arrays(directory: pathlib.Path, target: Any, state: Any) -> None:
    """Refuses restored arrays whose shape or dtype differ from the model's, or that hold NaN
    or Inf (a corrupt file: trained weights are finite)."""
    expected = dict(jax.tree_util.tree_leaves_with_path(target))
    for path, array in jax.tree_util.tree_leaves_with_path(state):
        name = _array_name(path)
        want = expected.get(path)
        if want is None or array.shape != want.shape or array.dtype != want.dtype:
            got = f"{array.dtype}{list(array.shape)}"
            wanted = "nothing" if want is None else f"{want.dtype}{list(want.shape)}"
            raise ValueError(f"checkpoint {str(directory)!r}: array {name} in {STATE_DIR}/ is "
                             f"{got}; the model needs {wanted}")
        if (jax.numpy.issubdtype(array.dtype, jax.numpy.inexact)
                and not bool(jax.numpy.isfinite(array).all())):
            raise ValueError(f"checkpoint {str(directory)!r}: array {name} in {STATE_DIR}/ "
                             "holds NaN or Inf values, so its files are damaged; restore the "
                             "checkpoint from its source")


def _check_checksums(directory: pathlib.Path, state: Any) -> None:
    """Compares the restored arrays with the sha256 sums ``save`` wrote (checkpoints saved
    before it wrote them have none, and are checked for shape, dtype and finiteness only)."""
    path = directory / CHECKSUMS_FILE
    if not path.is_file():
        return
    try:
        expected = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"checkpoint checksums {str(path)!r} cannot be read: "
                         f"{_first_line(error)}") from None
    found = _checksums(state)
    if found is None or not isinstance(expected, dict):
        return
    for name, digest in found.items():
        if expected.get(name, digest) != digest:
            raise ValueError(f"checkpoint {str(directory)!r}: array {name} in {STATE_DIR}/ does "
                             f"not match its sha256 in {CHECKSUMS_FILE}, so its files are "
                             "damaged; restore the checkpoint from its source")


def _array_name(path: tuple) -> str:
    """An array's path in the model state, as in ``['dense']['kernel']``."""
    name = jax.tree_util.keystr(path)
    return name.removesuffix(".value")


def _first_line(error: BaseException, root: bool = False, limit: int = 300) -> str:
    """The first line of ``error``'s message, or with ``root`` of the error at the root of its
    chain (orbax wraps tensorstore's error, which names the array and the file), shortened."""
    seen = [error]
    while root and (inner := seen[-1].__cause__ or seen[-1].__context__) and inner not in seen:
        seen.append(inner)
    root = seen[-1]
    lines = str(root).strip().splitlines()
    line = (lines[0] if lines else "").split(" See full TensorStore details")[0]
    text = line if type(root) is Exception else f"{type(root).__name__}: {line}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def load(directory: str | pathlib.Path, build: Callable[[dict[str, Any]], nnx.Module]
         ) -> tuple[nnx.Module, dict[str, Any]]:
    """The model a checkpoint's metadata describes, with the checkpoint's arrays, and the metadata.

    ``build(metadata)`` constructs the model; it runs under ``nnx.eval_shape``, so only the
    shapes are made (no random initialisation) before ``restore`` fills them.
    """
    metadata = load_metadata(directory)
    model = nnx.eval_shape(lambda: build(metadata))
    restore(directory, model)
    return model, metadata
