"""The ``pe-jax`` command: one subcommand per module of ``pe_jax.commands``.

``pe-jax run`` runs Private Evolution (the embedded default without ``--config``); see
``pe-jax <command> --help`` for each command. Bad input ends with exit status 2 and a message
that names the parameter.
"""

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "pe_jax.commands.run",
    "pe_jax.commands.audit",
    "pe_jax.commands.train_encoder",
    "pe_jax.commands.train_prior",
    "pe_jax.commands.tabular",
    "pe_jax.commands.dp_finetune",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pe-jax", description="Differentially private synthetic data by Private Evolution.")
    commands = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        command = commands.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(execute=module.execute)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.execute(args)
    except ValueError as error:
        print(f"pe-jax: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
