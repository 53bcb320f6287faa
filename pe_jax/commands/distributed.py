"""``--distributed``: one ``pe-jax`` command run by several processes (hosts) as one job.

Every process runs the same command; they join through ``jax.distributed`` and then work on
one mesh over all their devices (``pe_jax.sharding.global_mesh``). Each process reads and
embeds only its share of the private rows; process 0 draws the noise and alone writes the
outputs, the ledger and the checkpoint's files, so ``--out`` (and ``--ledger``) must name a
folder that every process sees, and be given explicitly (a default name with the time in it
could differ between hosts).
"""

import argparse

__all__ = ["add_arguments", "join"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--distributed`` options."""
    parser.add_argument(
        "--distributed", action="store_true",
        help="run as one process of a multi-process job (jax.distributed): start the same "
             "command on every host; the private rows and the population are split over every "
             "device of every process, and process 0 writes the outputs, so --out must be a "
             "folder all processes see. Without the three options below JAX reads the "
             "cluster from the environment (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
             "JAX_PROCESS_ID, or a cluster it detects)")
    parser.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                        help="with --distributed: the address of process 0's coordinator")
    parser.add_argument("--num-processes", type=int, default=None, metavar="N",
                        help="with --distributed: how many processes the job has")
    parser.add_argument("--process-id", type=int, default=None, metavar="I",
                        help="with --distributed: this process's index, 0 to N - 1")


def join(args: argparse.Namespace, out_given: bool) -> None:
    """Checks the options and, with ``--distributed``, joins the job (before JAX runs)."""
    from pe_jax import processes

    options = {"--coordinator": args.coordinator, "--num-processes": args.num_processes,
               "--process-id": args.process_id}
    if not args.distributed:
        given = [name for name, value in options.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only go with --distributed")
        return
    if not out_given:
        raise ValueError("--distributed needs --out (or --resume): a folder that every process "
                         "sees, named the same on every host")
    if args.devices is not None:
        raise ValueError("--devices chooses local devices; with --distributed the run uses "
                         "every device of every process")
    processes.initialize(args.coordinator, args.num_processes, args.process_id)
