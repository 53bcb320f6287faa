"""What the processes of a multi-process run (``jax.distributed``) must agree on.

Every process runs the same program, so anything one process decides from its own data --
how many private rows it holds, whether its rows passed their checks, whether its ledger
allows the run -- must be agreed before the next collective, or the processes part ways:
one raises while the others wait for it forever. In a single process these are plain calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import jax
import numpy as np

__all__ = ["agree", "barrier", "is_writer", "max_over_processes", "multiprocess",
           "total_over_processes"]

T = TypeVar("T")


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
