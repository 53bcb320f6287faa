"""``pe-jax train-encoder``: trains the glyph encoder used by ``embedding=encoder``.

``pe-jax train-encoder [--config FILE] [--set key=value ...] --out DIR`` trains a small
ConvNet on rendered glyphs only (public data, see ``pe_jax.training.encoder``) and writes a
checkpoint folder that ``make_embedder("encoder", checkpoint=DIR)`` loads. Without
``--config`` it uses ``pe_jax/configs/encoder.py``, which made the shipped encoder.
``--font-dir DIR`` (repeatable) adds the font files in DIR to the glyphs' faces; the shipped
encoder was trained with Debian's handwriting font packages installed (the simulator warns
when they are missing). A progress bar on stderr counts the steps (``--quiet`` hides it).
"""

import argparse
import shlex

from pe_jax.commands import add_config_arguments
from pe_jax.configs import CONFIG_DIR, load_config

NAME = "train-encoder"
HELP = "train the glyph encoder (public data only) and write its checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, CONFIG_DIR / "encoder.py", "pe_jax/configs/encoder.py",
                         out_help="a new checkpoint folder", out_required=True)
    parser.add_argument("--font-dir", action="append", default=None, metavar="DIR",
                        help="a folder of extra .ttf/.otf fonts to draw glyphs with (e.g. "
                             "handwriting faces); may be repeated (default: "
                             "$PE_JAX_FONT_DIRS)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def execute(args: argparse.Namespace) -> int:
    import time

    from pe_jax import checkpoints, reporting
    from pe_jax.training import encoder

    config = load_config(args.config, args.set)
    reporting.check_output_dir(args.out)  # before training, not after it
    start = time.perf_counter()
    model, record = encoder.train_encoder(config, font_dirs=args.font_dir,
                                          progress=not args.quiet)
    record["train_seconds"] = round(time.perf_counter() - start, 1)
    record["command"] = shlex.join(["pe-jax", NAME, "--config", args.config,
                                    *(f"--set={item}" for item in args.set),
                                    *(f"--font-dir={d}" for d in args.font_dir or ()),
                                    "--out", args.out])
    record["config"] = config.to_dict()
    checkpoints.save(args.out, model, record)
    print(f"wrote {args.out}: held-out glyph accuracy {record['heldout_glyph_accuracy']:.3f}, "
          f"{record['train_seconds']} s, {len(record['fonts'])} font faces")
    return 0
