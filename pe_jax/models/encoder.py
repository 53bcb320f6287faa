"""The glyph encoder: a small ConvNet trained on rendered glyphs only, shipped with pe_jax.

Pixel distances see two digits as far apart when a stroke moves by one pixel; a learned
embedding is more tolerant. The encoder is a ``ConvNet`` (``pe_jax.models.classifier``) whose
``embed`` layer PE uses for its votes; ``pe_jax.training.encoder`` trains it (public glyphs
only) and says how. The shipped checkpoint's ``metadata.json`` records the command, the
config, the fonts, the pose priors and their origin, the losses, the accuracy on held-out
glyphs and the training time.
"""

import pathlib
from typing import Any

from pe_jax import checkpoints
from pe_jax.models.classifier import ConvNet, ConvNetConfig, build

SHIPPED = pathlib.Path(__file__).resolve().parent.parent / "assets" / "encoder"


def load(directory: str | pathlib.Path | None = None) -> tuple[ConvNet, dict[str, Any]]:
    """The encoder stored in ``directory`` (default: the shipped one) and its metadata."""
    directory = SHIPPED if directory is None else pathlib.Path(directory)
    return checkpoints.load(
        directory, lambda metadata: build(ConvNetConfig.from_dict(metadata["model"]), 0))
