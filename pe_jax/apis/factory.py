"""The public generator a run config names: the glyph simulator or a diffusion prior.

``make_generator(config, class_names, resolution)`` returns the generator and the description
of it that the privacy report lists as public:

* ``generator = "glyphs"``: ``pe_jax.apis.glyphs.GlyphGenerator`` drawing the class names as
  characters with the pose priors ``config.glyph_priors`` (every parameter of
  ``pe_jax.apis.glyphs.PARAMETERS`` as ``{mean, std, low, high}``; unset: ``DEFAULT_PRIORS``);
  the description lists the fonts, the priors and the priors' origin.
* ``generator = "diffusion"``: ``pe_jax.apis.diffusion.DiffusionGenerator`` loaded from the
  checkpoint ``config.prior`` (empty: the shipped default prior), sampling with
  ``config.diffusion_steps`` DDIM steps and guidance ``config.guidance``. The checkpoint must
  have been trained on the same classes (in the same order) and resolution as the private data;
  the description repeats its training command and training data (fonts, pose priors and
  their origin) from its metadata.

Heavy imports happen inside ``make_generator``, so importing this module is cheap.
"""

import pathlib
from collections.abc import Mapping, Sequence

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
        from pe_jax.apis.glyphs import GlyphGenerator, describe_priors

        generator = GlyphGenerator(characters="".join(class_names), resolution=resolution,
                                   priors=_glyph_priors(config.get("glyph_priors")))
        described = {
            "description": "characters rendered by the glyph simulator pe_jax.apis.glyphs "
                           "in the font files installed here, posed by the pose priors that "
                           "privacy.json lists with their origin",
            "name": "glyphs", "fonts": list(generator.fonts),
            "priors": describe_priors(generator.priors)}
        return generator, described

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
    described = {"description": f"the diffusion prior checkpoint {str(path)!r}; privacy.json "
                                "lists its training command and training data (fonts, pose "
                                "priors and their origin) from its metadata",
                 "name": "diffusion", "checkpoint": str(path),
                 "command": metadata.get("command"), "training_data": metadata.get("data", {}),
                 "sampling": {"steps": config.diffusion_steps, "guidance": config.guidance}}
    return generator, described


def _glyph_priors(priors: Mapping[str, Mapping[str, float]] | None) -> dict | None:
    """``config.glyph_priors`` as ``ParamPrior`` values (None when unset)."""
    from pe_jax.apis.glyphs import PARAMETERS, ParamPrior

    if not priors:
        return None
    fields = {name: sorted(p.keys()) if hasattr(p, "keys") else p for name, p in priors.items()}
    require(sorted(fields) == sorted(PARAMETERS)
            and all(f == sorted(ParamPrior._fields) for f in fields.values()), "glyph_priors",
            f"a {{mean, std, low, high}} entry for each of {list(PARAMETERS)}", fields)
    return {name: ParamPrior(**p) for name, p in priors.items()}
