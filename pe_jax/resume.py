"""Exact resume of an interrupted PE run: the hidden ``.resume/`` folder of its output folder.

What is written, per iteration ``t`` (``evolve.run(..., checkpoint=...)``):

1. right after the noise of ``t`` is drawn and recorded in the ledger: ``noise-<t>.npz``
   (the noise, and the seeded noise generator's state if any), atomically;
2. after step ``t`` and its callbacks: the population state (orbax, finalised atomically),
   then ``progress.json``, then the noise files up to ``t`` are deleted.

A resumed run restores the latest state and re-runs the iterations after it; an iteration
whose noise file exists uses that noise instead of drawing again, so a release whose noise
was drawn and recorded is never drawn twice. A crash between recording a release and writing
its noise file leaves one recorded release that nothing used: the ledger over-counts (the
safe direction) and the resumed run draws afresh. With the same inputs and build, the
resumed run's samples and ledger are bitwise those of an uninterrupted one (seeded noise
shows it; CSPRNG noise cannot be replayed, but is never drawn twice either).

``fingerprint.json`` pins what the run depends on: the config, the private data, the public
models and the build. :meth:`RunCheckpoint.open` refuses, before anything is released, a
resume whose fingerprint differs, naming what changed.

In a multi-process run (``jax.distributed``) every process calls the same methods on the
same folder, which must be on a file system that all of them see: orbax writes each process's
shards of the state, process 0 alone writes the JSON and noise files (every process received
the same noise from it), and every process reads them back on resume.

The folder is SECRET while it exists: a noise file together with the released noisy counts
gives the exact vote counts. Its files are readable by the owner only, and the run deletes
the folder when it completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from pe_jax import processes
from pe_jax._files import write_atomic

__all__ = ["FOLDER", "RunCheckpoint", "build_fingerprint", "sha256_arrays", "sha256_files"]

FOLDER = ".resume"
FORMAT = "pe_jax/resume/1"
_FINGERPRINT = "fingerprint.json"
_PROGRESS = "progress.json"
_RUN = "run.json"
_STATE = "state"
_NOISE_PREFIX = "noise-"


def sha256_arrays(*arrays: np.ndarray) -> str:
    """A hash of arrays' dtypes, shapes and bytes (e.g. the private images and labels)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def sha256_files(paths: Iterable[str | os.PathLike]) -> str:
    """A hash of files' contents, a folder standing for every file under it (sorted)."""
    digest = hashlib.sha256()
    for root in sorted(pathlib.Path(p).absolute() for p in paths):
        files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
        for file in files:
            digest.update(str(file.relative_to(root.parent)).encode() + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def build_fingerprint(config: Mapping[str, Any], private_data: str,
                      public_models: str) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one, as JSON values.

    ``private_data`` and ``public_models`` are hashes (:func:`sha256_arrays`,
    :func:`sha256_files`); the build is pe_jax's, JAX's and NumPy's versions and the devices.
    """
    import jaxlib

    import pe_jax

    devices = jax.local_devices()
    return {
        "format": FORMAT,
        "config": json.loads(json.dumps(dict(config))),
        "private_data": private_data,
        "public_models": public_models,
        "build": {"pe_jax": pe_jax.__version__, "jax": jax.__version__,
                  "jaxlib": jaxlib.__version__, "numpy": np.__version__,
                  "backend": jax.default_backend(), "device_kind": devices[0].device_kind,
                  "local_devices": len(devices)},
    }


def _dotted(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{dotted key: value}`` (``{"pe": {"k": 1}}`` -> ``{"pe.k": 1}``),
    so that a changed setting is named by the key ``--set`` takes."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _differences(saved: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """What changed between two fingerprints, in words."""
    changes = []
    old_config, new_config = _dotted(saved["config"]), _dotted(given["config"])
    for key in sorted(set(old_config) | set(new_config)):
        old, new = old_config.get(key), new_config.get(key)
        if old != new:
            changes.append(f"config {key}: {old!r} -> {new!r}")
    for key, what in [("private_data", "the private data"),
                      ("public_models", "the public models (generator, embedding)")]:
        if saved[key] != given[key]:
            changes.append(f"{what} (sha256 {saved[key][:12]} -> {given[key][:12]})")
    for key in sorted(set(saved["build"]) | set(given["build"])):
        old, new = saved["build"].get(key), given["build"].get(key)
        if old != new:
            changes.append(f"build {key}: {old!r} -> {new!r}")
    return changes


def _write_json(path: pathlib.Path, value: Any) -> None:
    write_atomic(path, lambda f: f.write((json.dumps(value, indent=2) + "\n").encode()))


class RunCheckpoint:
    """The ``.resume/`` folder of one run: its state, pending noise and fingerprint.

    Make one with :meth:`create` (a new run) or :meth:`open` (``--resume``), and pass it to
    ``evolve.run(..., checkpoint=...)``.
    """

    def __init__(self, folder: pathlib.Path):
        self.folder = folder
        self._manager = ocp.CheckpointManager(
            (folder / _STATE).absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                                 enable_async_checkpointing=False))

    @classmethod
    def create(cls, out_dir: str | os.PathLike, fingerprint: Mapping[str, Any],
               run: Mapping[str, Any]) -> RunCheckpoint:
        """The checkpoint folder of a new run in ``out_dir`` (which must not have one).

        ``run`` holds what a resumed run needs besides the fingerprint (JSON values, e.g.
        where the ledger is); :attr:`run` and :meth:`recorded_run` give it back.
        """
        folder = pathlib.Path(out_dir) / FOLDER
        processes.agree(lambda: _check_new(folder, out_dir), "the checkpoint folder")
        if processes.is_writer():
            folder.mkdir(mode=0o700)
            _write_json(folder / _RUN, dict(run))
            _write_json(folder / _PROGRESS, {"iteration": 0, "draws": 0, "noise_rng": None})
            _write_json(folder / _FINGERPRINT, dict(fingerprint))  # last: marks it usable
        processes.barrier("pe_jax.resume: folder created")
        return cls(folder)

    @staticmethod
    def recorded_run(out_dir: str | os.PathLike) -> dict[str, Any]:
        """The ``run`` details the interrupted run in ``out_dir`` was created with."""
        folder = pathlib.Path(out_dir) / FOLDER
        if not (folder / _FINGERPRINT).is_file():
            raise ValueError(f"--resume: {str(out_dir)!r} holds no interrupted run (no "
                             f"{FOLDER}/{_FINGERPRINT}; a completed run deletes it)")
        return json.loads((folder / _RUN).read_text())

    @classmethod
    def open(cls, out_dir: str | os.PathLike, fingerprint: Mapping[str, Any]) -> RunCheckpoint:
        """The checkpoint folder of the interrupted run in ``out_dir``.

        Raises ValueError, before anything is released, when there is none or when
        ``fingerprint`` differs from the saved one (naming every difference).
        """
        cls.recorded_run(out_dir)
        path = pathlib.Path(out_dir) / FOLDER / _FINGERPRINT
        saved = json.loads(path.read_text())
        if saved.get("format") != FORMAT:
            raise ValueError(f"--resume: {str(path)!r} is not a {FORMAT} fingerprint")
        changes = _differences(saved, fingerprint)
        if changes:
            raise ValueError("--resume refused: the run would not continue the interrupted "
                             "one, because " + "; ".join(changes) + ". Nothing was released")
        return cls(path.parent)

    @property
    def run(self) -> dict[str, Any]:
        """The ``run`` details given to :meth:`create`."""
        return json.loads((self.folder / _RUN).read_text())

    @property
    def iteration(self) -> int:
        """How many iterations the saved state has run (0 before the first save)."""
        latest = self._manager.latest_step()
        return 0 if latest is None else int(latest)

    def _noise_files(self) -> dict[int, pathlib.Path]:
        return {int(p.stem[len(_NOISE_PREFIX):]): p
                for p in self.folder.glob(f"{_NOISE_PREFIX}*.npz")}

    def restore(self, state: Any) -> Any:
        """The latest saved state (same structure as ``state``), or ``state`` if none."""
        latest = self._manager.latest_step()
        if latest is None:
            return state
        leaves, treedef = jax.tree.flatten(state)
        target = {str(i): ocp.utils.to_shape_dtype_struct(leaf)
                  for i, leaf in enumerate(leaves) if not _is_key(leaf)}
        saved = self._manager.restore(latest, args=ocp.args.StandardRestore(target))
        restored = [leaf if _is_key(leaf) else saved[str(i)] for i, leaf in enumerate(leaves)]
        return jax.tree.unflatten(treedef, restored)

    def noise_rng_state(self) -> tuple[int, dict | None]:
        """``(draws, state)``: how many noise vectors were drawn, and the seeded noise
        generator's state after the last of them (None: CSPRNG noise)."""
        records = [json.loads((self.folder / _PROGRESS).read_text())]
        for path in self._noise_files().values():
            with np.load(path) as saved:
                records.append(json.loads(str(saved["record"])))
        latest = max(records, key=lambda record: record["draws"])
        return latest["draws"], latest["noise_rng"]

    def pending_noise(self, iteration: int) -> np.ndarray | None:
        """The recorded noise of ``iteration`` if it was drawn but its step not saved."""
        path = self._noise_files().get(iteration)
        if path is None:
            return None
        with np.load(path) as saved:
            return saved["noise"]

    def pending_draws(self, after: int) -> int:
        """How many iterations after ``after`` already have recorded noise."""
        return sum(t > after for t in self._noise_files())

    def noise_drawn(self, iteration: int, noise: np.ndarray,
                    noise_rng: np.random.Generator | None) -> None:
        """Keeps the noise of ``iteration``, just drawn and recorded, until its step is saved."""
        if not processes.is_writer():
            return
        record = {"iteration": iteration, "draws": iteration,
                  "noise_rng": None if noise_rng is None else noise_rng.bit_generator.state}
        write_atomic(self.folder / f"{_NOISE_PREFIX}{iteration:06d}.npz",
                      lambda f: np.savez(f, noise=noise, record=json.dumps(record)))

    def save(self, state: Any, iteration: int, draws: int,
             noise_rng: np.random.Generator | None) -> None:
        """Saves the state after ``iteration`` steps (``draws`` noise vectors drawn so far),
        then forgets the noise those steps used."""
        leaves = jax.tree.leaves(state)
        tree = {str(i): leaf for i, leaf in enumerate(leaves) if not _is_key(leaf)}
        self._manager.save(iteration, args=ocp.args.StandardSave(tree))
        self._manager.wait_until_finished()
        if not processes.is_writer():
            return
        _write_json(self.folder / _PROGRESS, {
            "iteration": iteration, "draws": draws,
            "noise_rng": None if noise_rng is None else noise_rng.bit_generator.state})
        for t, path in self._noise_files().items():
            if t <= iteration:
                path.unlink()

    def remove(self) -> None:
        """Deletes the folder (the run completed): its noise files are secret."""
        self._manager.close()
        processes.barrier("pe_jax.resume: run complete")
        if processes.is_writer():
            shutil.rmtree(self.folder)


def _check_new(folder: pathlib.Path, out_dir: str | os.PathLike) -> None:
    if folder.exists():
        raise ValueError(f"{str(folder)!r} already exists: resume that run with "
                         f"--resume {str(out_dir)!r} instead")


def _is_key(leaf: Any) -> bool:
    """Typed PRNG keys are not saved: the run's key comes from its (fingerprinted) seed."""
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype,
                                                                 jax.dtypes.prng_key)
