"""The public generator a run config names: the glyph simulator or a diffusion prior.

``make_generator(config, class_names, resolution)`` returns the generator and the description
of it that the privacy report lists as public:

* ``generator = "glyphs"``: ``pe_jax.apis.glyphs.GlyphGenerator`` drawing the class names as
  characters.
* ``generator = "diffusion"``: ``pe_jax.apis.diffusion.DiffusionGenerator`` loaded from the
  checkpoint ``config.prior`` (empty: the shipped default prior), sampling with
  ``config.diffusion_steps`` DDIM steps and guidance ``config.guidance``. The checkpoint must
  have been trained on the same classes (in the same order) and resolution as the private data.

Heavy imports happen inside ``make_generator``, so importing this module is cheap.
"""

import pathlib
from collections.abc import Sequence

import ml_collections

from pe_jax._checks import require

__all__ = ["GENERATORS", "make_generator"]

GENERATORS = ("glyphs", "diffusion")


def make_generator(config: ml_collections.ConfigDict, class_names: Sequence[str],
                   resolution: int) -> tuple[object, dict]:
    """The config's generator for images of ``resolution`` pixels with these classes."""
    require(config.generator in GENERATORS, "generator", f"one of {GENERATORS}",
            config.generator)
    if config.generator == "glyphs":
        from pe_jax.apis.glyphs import GlyphGenerator

        generator = GlyphGenerator(characters="".join(class_names), resolution=resolution)
        return generator, {"name": "glyphs", "fonts": list(generator.fonts)}

    from pe_jax import checkpoints
    from pe_jax.apis.diffusion import DEFAULT_PRIOR, DiffusionGenerator

    path = pathlib.Path(config.get("prior") or DEFAULT_PRIOR)
    metadata = checkpoints.load_metadata(path)
    trained = metadata.get("class_names")
    require(trained == list(class_names), "prior",
            f"a checkpoint trained on the classes {list(class_names)}",
            f"{str(path)!r} with classes {trained}")
    require(metadata["unet"]["resolution"] == resolution, "prior",
            f"a checkpoint of {resolution}x{resolution} images",
            f"{str(path)!r} at {metadata['unet']['resolution']}")
    generator = DiffusionGenerator.from_checkpoint(path, steps=config.diffusion_steps,
                                                   guidance=config.guidance)
    described = {"name": "diffusion", "checkpoint": str(path),
                 "fonts": metadata.get("data", {}).get("fonts", []),
                 "sampling": {"steps": config.diffusion_steps, "guidance": config.guidance}}
    return generator, described
