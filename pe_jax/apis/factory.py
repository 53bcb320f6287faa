"""The public generator a run config's ``generator`` section names: glyphs or a diffusion prior.

``make_generator(section, class_names, image_shape)`` returns the generator and the
description of it that the privacy report lists as public:

* ``name = "glyphs"``: ``pe_jax.apis.glyphs.GlyphGenerator`` drawing the class names as
  characters with the pose priors ``glyph_priors`` (every parameter of
  ``pe_jax.apis.glyphs.PARAMETERS`` as ``{mean, std, low, high}``; unset: ``DEFAULT_PRIORS``);
  grey square images only. The description lists the fonts, the priors and their origin.
* ``name = "diffusion"``: ``pe_jax.apis.diffusion.DiffusionGenerator`` loaded from the
  checkpoint ``prior`` (empty: the shipped default prior), sampling with ``steps`` DDIM steps
  and guidance ``guidance``. A class-conditional checkpoint must have been trained on the same
  classes (in the same order) as the private data; an unconditional one (``unet.num_classes``
  0) serves any classes, each class's ``random`` samples drawn from the one unconditional
  model (e.g. a prior trained on other classes than the private data's). Either must match
  the data's resolution and channels. The description repeats its training command and
  training data (fonts, pose priors and their origin) from its metadata.

Heavy imports happen inside ``make_generator``, so importing this module is cheap.
"""

import pathlib
from collections.abc import Mapping, Sequence

import ml_collections

from pe_jax._checks import require

__all__ = ["GENERATORS", "make_generator"]

GENERATORS = ("glyphs", "diffusion")


def make_generator(section: ml_collections.ConfigDict, class_names: Sequence[str],
                   image_shape: Sequence[int]) -> tuple[object, dict]:
    """The generator of the ``generator`` section for ``(H, W, C)`` images of these classes."""
    require(section.name in GENERATORS, "generator.name", f"one of {GENERATORS}",
            section.name)
    height, width, channels = image_shape
    if section.name == "glyphs":
        from pe_jax.apis.glyphs import GlyphGenerator, describe_priors

        require(height == width and channels == 1, "generator.name",
                "'diffusion' for this data set: glyphs draws grey square images",
                f"'glyphs' for {height}x{width}x{channels} images")
        generator = GlyphGenerator(characters="".join(class_names), resolution=height,
                                   priors=_glyph_priors(section.glyph_priors))
        described = {
            "description": "characters rendered by the glyph simulator pe_jax.apis.glyphs "
                           "in the font files installed here, posed by the pose priors that "
                           "privacy.json lists with their origin",
            "name": "glyphs", "fonts": list(generator.fonts),
            "priors": describe_priors(generator.priors)}
        return generator, described

    from pe_jax import checkpoints
    from pe_jax.apis.diffusion import DEFAULT_PRIOR, DiffusionGenerator

    path = pathlib.Path(section.prior or DEFAULT_PRIOR)
    metadata = checkpoints.load_metadata(path)
    unet = metadata.get("unet", {})
    trained = metadata.get("class_names")
    require(unet.get("num_classes") == 0 or trained == list(class_names), "generator.prior",
            f"an unconditional checkpoint (unet.num_classes 0) or one trained on the classes "
            f"{list(class_names)}", f"{str(path)!r}, conditional on the classes {trained}")
    trained_shape = (unet["resolution"], unet["resolution"], unet["channels"])
    require(trained_shape == tuple(image_shape), "generator.prior",
            f"a checkpoint of {height}x{width}x{channels} images",
            f"{str(path)!r} of {'x'.join(map(str, trained_shape))} images")
    generator = DiffusionGenerator.from_checkpoint(path, steps=section.steps,
                                                   guidance=section.guidance)
    described = {"description": f"the diffusion prior checkpoint {str(path)!r}; privacy.json "
                                "lists its training command and training data (fonts, pose "
                                "priors and their origin) from its metadata",
                 "name": "diffusion", "checkpoint": str(path),
                 "command": metadata.get("command"), "training_data": metadata.get("data", {}),
                 "sampling": {"steps": section.steps, "guidance": section.guidance}}
    return generator, described


def _glyph_priors(priors: Mapping[str, Mapping[str, float]] | None) -> dict | None:
    """``glyph_priors`` as ``ParamPrior`` values (None when unset)."""
    from pe_jax.apis.glyphs import PARAMETERS, ParamPrior

    if not priors:
        return None
    fields = {name: sorted(p.keys()) if hasattr(p, "keys") else p for name, p in priors.items()}
    require(sorted(fields) == sorted(PARAMETERS)
            and all(f == sorted(ParamPrior._fields) for f in fields.values()),
            "generator.glyph_priors",
            f"a {{mean, std, low, high}} entry for each of {list(PARAMETERS)}", fields)
    return {name: ParamPrior(**p) for name, p in priors.items()}
