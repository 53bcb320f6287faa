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
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jax

INTERRUPTED_STATUS = 130
"""The exit status of a command stopped by Ctrl-C or SIGTERM (128 + SIGINT)."""

OUT_HELP = "a new output folder (default: outputs/<config name>-<UTC time>)"

INCOMPLETE_FILE = "INCOMPLETE"
"""The marker an output folder holds until its command ends (``pe-jax run``, ``dp-finetune``)."""

SAMPLES_FILE = "samples.npz"
"""The synthetic data set a command writes into its output folder."""

SAMPLES_GRID_FILE = "samples.png"
"""The picture of the final samples a command writes next to them."""


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


def completed(out: pathlib.Path) -> bool:
    """Whether ``out`` holds a run that ended: its samples written and no INCOMPLETE marker
    (experiment scripts that run commands cell by cell skip the cells that did)."""
    return (out / SAMPLES_FILE).exists() and not (out / INCOMPLETE_FILE).exists()


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


def check_devices(devices: int | None) -> int:
    """``--devices``: an int in [1, local device count]; None means all local devices."""
    import jax

    from pe_jax._checks import check_int

    available = jax.local_device_count()
    return available if devices is None else check_int("--devices", devices, 1, available)


def device_mesh(devices: int | None, rows: int, what: str) -> "jax.sharding.Mesh | None":
    """The data-parallel mesh of a command on ``devices`` local devices (None: all of them)
    whose ``rows`` rows (``what``, in words) are split evenly over the devices.

    When ``rows`` is not a multiple of ``devices`` the command uses the most of them that it
    is a multiple of, and prints a note (1,000 rows on 8 devices: 8; on 6: 5; on 3: 2). One
    device gives ``None``: the single-device program, with no mesh at all.
    """
    from pe_jax import sharding

    devices = check_devices(devices)
    used = sharding.even_devices(rows, devices)
    if used < devices:
        print(f"pe-jax: {what} does not split evenly over {devices} devices; running on "
              f"{used} of them", file=sys.stderr)
    return None if used == 1 else sharding.local_mesh(used)
