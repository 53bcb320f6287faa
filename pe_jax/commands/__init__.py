"""The ``pe-jax`` subcommands, one module each.

A command module defines ``NAME`` (the word typed after ``pe-jax``), ``HELP`` (one line),
``add_arguments(parser)`` and ``execute(args) -> int``. It imports heavy libraries inside
``execute`` so that ``pe-jax --help`` stays fast. ``pe_jax.cli`` lists the modules.
"""
