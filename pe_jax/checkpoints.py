"""Saving and loading Flax NNX models as orbax checkpoints, with a JSON metadata file.

A checkpoint is a folder: ``state/`` holds the model's arrays (orbax, no pickle, so loading
never runs code) and ``metadata.json`` says what the arrays are for (the config that builds the
model, the data and command that trained it). ``restore`` fills a model built from that config,
so the same path loads the checkpoints shipped with pe_jax and the ones users bring.
"""

import json
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

STATE_DIR = "state"
METADATA_FILE = "metadata.json"


def save(directory: str | pathlib.Path, model: nnx.Module, metadata: dict[str, Any]) -> pathlib.Path:
    """Writes ``model``'s state and ``metadata`` (JSON-serialisable) to a new folder.

    Refuses a folder that exists and is not empty, so no earlier checkpoint is overwritten.
    """
    directory = pathlib.Path(directory).absolute()
    if directory.exists() and any(directory.iterdir()):
        raise ValueError(f"checkpoint directory must be new or empty; {str(directory)!r} is not empty")
    text = json.dumps(metadata, indent=2, sort_keys=True)  # fail before writing any arrays
    directory.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory / STATE_DIR, nnx.state(model))
    (directory / METADATA_FILE).write_text(text + "\n")
    return directory


def load_metadata(directory: str | pathlib.Path) -> dict[str, Any]:
    """The metadata written with a checkpoint (read it first to build the matching model)."""
    path = pathlib.Path(directory) / METADATA_FILE
    if not path.is_file():
        raise ValueError(f"checkpoint directory must contain {METADATA_FILE}; "
                         f"{str(directory)!r} does not")
    return json.loads(path.read_text())


def restore(directory: str | pathlib.Path, model: nnx.Module) -> dict[str, Any]:
    """Loads a checkpoint's arrays into ``model`` in place; returns its metadata.

    ``model`` must have the structure of the saved one (build it from the metadata's config);
    a missing, extra or differently shaped array raises ValueError naming the checkpoint.
    """
    directory = pathlib.Path(directory).absolute()
    metadata = load_metadata(directory)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.state(model))
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            state = checkpointer.restore(directory / STATE_DIR, target)
    except (ValueError, KeyError, FileNotFoundError) as error:
        raise ValueError(f"checkpoint {str(directory)!r} does not match the model: {error}") from error
    nnx.update(model, state)
    return metadata


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
