"""What the processes of a multi-process run (``jax.distributed``) must agree on.

Every process runs the same program, so anything one process decides from its own data --
how many private rows it holds, whether its rows passed their checks, whether its ledger
allows the run -- must be agreed before the next collective, or the processes part ways:
one raises while the others wait for it forever. In a single process these are plain calls.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np

__all__ = ["agree", "barrier", "check_same", "combined_sha256", "gather", "initialize", "is_writer",
           "max_over_processes", "multiprocess", "stop_on_error", "total_over_processes"]

T = TypeVar("T")


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Joins this process to a multi-process run (``jax.distributed.initialize``).

    Arguments left None are read by JAX from the environment (its cluster detection, or
    ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``). On CPU the
    processes' collectives go through gloo. Call it before anything else uses JAX.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices only
    try:
        jax.distributed.initialize(coordinator_address=coordinator,
                                   num_processes=num_processes, process_id=process_id)
    except (ValueError, RuntimeError) as error:
        raise ValueError(
            "--distributed: could not join the multi-process run; give the coordinator's "
            "host:port, the number of processes and this process's id (--coordinator, "
            "--num-processes, --process-id, or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
            f"JAX_PROCESS_ID); JAX said: {error}") from error


def multiprocess() -> bool:
    """Whether this is one of several processes (after ``jax.distributed.initialize``)."""
    return jax.process_count() > 1


def is_writer() -> bool:
    """Whether this process writes the run's files: process 0 (the only one, alone)."""
    return jax.process_index() == 0


def _gather(value: int) -> np.ndarray:
    """``(process_count,)``: every process's ``value``, in process order."""
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(value, np.int64)))


def gather(tree: Any) -> Any:
    """Every leaf whole, as NumPy arrays, on every process (a collective in a multi-process
    run: every process must call it).

    A multi-process run's population is sharded over every process's devices; this brings
    it back, e.g. for process 0 to write. Outputs computed from it then do not depend on
    how many devices or processes the run used.
    """
    if not multiprocess():
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def combined_sha256(digest: str) -> str:
    """One hash of every process's ``digest`` (hex), in process order: e.g. of the private
    data that each process holds its share of. A single process's digest is returned as is."""
    if not multiprocess():
        return digest
    return hashlib.sha256(_digests(digest).tobytes()).hexdigest()


def _digests(digest: str) -> np.ndarray:
    """``(process_count, bytes)`` uint8: every process's ``digest`` (hex), in process order."""
    from jax.experimental import multihost_utils

    mine = np.frombuffer(bytes.fromhex(digest), np.uint8)
    return np.asarray(multihost_utils.process_allgather(mine))


def check_same(digest: str, what: str) -> None:
    """Raises on every process unless every process has the same ``digest`` (hex) of
    ``what``, e.g. of its config: the processes of one run must run the same thing."""
    if not multiprocess():
        return
    every = _digests(digest)
    differ = [i for i, other in enumerate(every) if not np.array_equal(other, every[0])]
    if differ:
        raise ValueError(f"{what} differs between process 0 and process(es) {differ}: every "
                         "process of a --distributed run must be given the same")


def stop_on_error(error: BaseException) -> None:
    """In a multi-process run, prints ``error`` and ends this process at once.

    A normal exit would wait at ``jax.distributed``'s shutdown barrier for processes that may
    be waiting for this one in a collective; ending now lets the job's coordinator see the
    process gone and stop the others. Errors that every process agreed on (:func:`agree`)
    end every process this way. In a single process it returns, and the error goes on.
    """
    if not multiprocess():
        return
    print(f"pe-jax: error on process {jax.process_index()}: {error}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(2 if isinstance(error, ValueError) else 1)


def barrier(name: str) -> None:
    """Waits until every process has come here (e.g. process 0 has written a file)."""
    if multiprocess():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def max_over_processes(value: int) -> int:
    """The largest of every process's ``value`` (e.g. its number of private rows)."""
    return int(_gather(value).max()) if multiprocess() else int(value)


def total_over_processes(value: int) -> int:
    """The sum of every process's ``value`` (e.g. the private rows of the whole run)."""
    return int(_gather(value).sum()) if multiprocess() else int(value)


def agree(check: Callable[[], T], what: str) -> T:
    """Runs ``check`` on every process; if it raised on any, it raises on all.

    The process whose check failed raises its own error (which names the problem); every
    other process raises a ``RuntimeError`` that names the failed processes and ``what`` was
    checked. So no process goes on alone to a collective -- or to a release -- that the
    others will never join.
    """
    if not multiprocess():
        return check()
    try:
        result = check()
    except Exception:
        _gather(1)
        raise
    failed = np.flatnonzero(_gather(0))
    if failed.size:
        raise RuntimeError(f"{what}: refused on process(es) {failed.tolist()} (their logs say "
                           "why); every process stops here, before anything is released")
    return result
