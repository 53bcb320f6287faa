"""``--ledger FILE`` and ``--ledger-budget EPSILON``: one privacy ledger file for every run on
the same private data, so that PE runs (``pe-jax run``) and DP-SGD fine-tunes (``pe-jax
dp-finetune``) compose.

A command opens the file (or, without ``--ledger``, a fresh ledger whose budget is the run's
own epsilon) and checks its whole run against the budget before anything is spent; a resumed
run finds the file its interrupted run recorded in. The ledger composes mixed events
exactly (``pe_jax.privacy.dpsgd_accounting.epsilon_of_groups``).
"""

import argparse
import math
import pathlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pe_jax.privacy import PrivacyLedger

ADJACENCY = "add_remove"
"""The runs' neighbouring relation: data sets that differ by one private row added or removed."""


def add_arguments(parser: argparse.ArgumentParser, spent: str) -> None:
    """The two options; ``spent`` names what the command records (e.g. "releases")."""
    parser.add_argument(
        "--ledger", type=pathlib.Path, default=None, metavar="FILE",
        help=f"a privacy ledger file (JSON) shared by all runs on the same private data "
             f"(pe-jax run and pe-jax dp-finetune alike): this run's {spent} are appended to "
             "it, checked against its budget before anything is spent, and the file is "
             "rewritten (atomically) after every one, so repeated runs compose. A missing FILE "
             "is created; an existing one must have this run's delta. Without --ledger every "
             "run starts a fresh ledger and reruns are not composed")
    parser.add_argument(
        "--ledger-budget", type=float, default=None, metavar="EPSILON",
        help="the total epsilon budget of a NEW --ledger file, over all runs recorded in it "
             "(default: no limit; the composed total is still reported); an existing file "
             "keeps the budget it was created with. Each run also stays within its own "
             "config epsilon")


def open_ledger(path: pathlib.Path | None, budget: float | None, *, delta: float,
                own_budget: float | None) -> "PrivacyLedger":
    """The run's ledger: the file ``path`` (``--ledger``, with ``--ledger-budget`` ``budget``
    if it is new), or a fresh in-memory one whose budget is the run's own epsilon."""
    from pe_jax import privacy

    if path is None:
        if budget is not None:
            raise ValueError("--ledger-budget sets the budget of a --ledger file; give --ledger "
                             "too, or leave it out")
        return privacy.PrivacyLedger(delta, adjacency=ADJACENCY, epsilon_budget=own_budget)
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise ValueError(f"--ledger-budget must be a finite epsilon > 0; got {budget!r}")
    return privacy.PrivacyLedger.open(path, delta=delta, adjacency=ADJACENCY,
                                      epsilon_budget=budget)


def resumed_ledger(out: pathlib.Path, given: pathlib.Path | None,
                   budget: float | None) -> pathlib.Path | None:
    """The shared ledger file of the interrupted run in ``out`` (None: its own), checked
    against ``--ledger`` (``given``)."""
    from pe_jax import resume

    if budget is not None:
        raise ValueError("--ledger-budget sets the budget of a new --ledger file; a resumed "
                         "run keeps its ledger")
    recorded = resume.RunCheckpoint.recorded_run(out)
    path = pathlib.Path(recorded["ledger_file"]) if recorded["shared_ledger"] else None
    if given is not None and (path is None or given.absolute() != path):
        raise ValueError(f"--ledger: the interrupted run in {str(out)!r} recorded its releases "
                         f"in {recorded['ledger_file']!r}; leave --ledger out to continue there")
    return path


def run_record(ledger_file: pathlib.Path, shared: bool, run_start: int) -> dict:
    """What a run's checkpoint keeps so that ``--resume`` finds its ledger and its share."""
    return {"shared_ledger": shared, "run_start": run_start,
            "ledger_file": str(ledger_file.absolute())}


def print_summary(report: dict) -> None:
    """Prints the line a command ends with about its shared ledger file (none without one)."""
    from pe_jax import reporting

    composed = report["composed"]
    if composed["ledger_file"] is not None:
        print(f"ledger {composed['ledger_file']}: {composed['releases']} releases in all "
              f"({reporting.composed_mechanisms(report)}), {reporting.composed_total(report)}")
