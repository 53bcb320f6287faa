"""The ``pe-jax`` subcommands, one module each.

A command module defines ``NAME`` (the word typed after ``pe-jax``), ``HELP`` (one line),
``add_arguments(parser)`` and ``execute(args) -> int``. It imports heavy libraries inside
``execute`` so that ``pe-jax --help`` stays fast. ``pe_jax.cli`` lists the modules.
"""

import argparse
import contextlib
import datetime
import pathlib
import signal
from collections.abc import Iterator

INTERRUPTED_STATUS = 130
"""The exit status of a command stopped by Ctrl-C or SIGTERM (128 + SIGINT)."""

OUT_HELP = "a new output folder (default: outputs/<config name>-<UTC time>)"


def add_config_arguments(parser: argparse.ArgumentParser, default_config: str | pathlib.Path,
                         described: str, *, out_help: str = OUT_HELP,
                         out_required: bool = False) -> None:
    """The ``--config``, ``--set`` and ``--out`` options that every command shares."""
    parser.add_argument("--config", default=str(default_config),
                        help=f"a .py file with get_config() (default: {described})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value; may be repeated")
    parser.add_argument("--out", default=None, required=out_required, help=out_help)


def output_dir(out: str | None, config_name: str) -> pathlib.Path:
    """``--out``, or ``outputs/<config name>-<UTC time>`` when it was not given."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return pathlib.Path(out or f"outputs/{config_name}-{stamp}")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside, SIGTERM ends a command the way Ctrl-C does (a ``KeyboardInterrupt``), so the
    command's own interrupt handling (what it saved, how to continue) runs for both."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
