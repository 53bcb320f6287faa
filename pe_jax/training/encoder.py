"""Training the glyph encoder (``pe_jax.models.encoder``) on rendered glyphs only.

It is trained with two public objectives on glyphs drawn fresh each step from
``pe_jax.apis.glyphs.GlyphGenerator`` (its fonts, characters and pose priors): classify the
character, and regress the pose parameters (rotation, shear, scale, aspect, shift, stroke
weight, blur, intensity, standardised by their prior), so the embedding also tells apart styles
of the same digit, which is what class-conditional votes compare. No private data is used in
training: the glyphs' pose priors (``DEFAULT_PRIORS``) were fitted to the held-out rows of
scikit-learn's digits only, never to private rows.

The glyphs are drawn in every face ``discover_fonts`` finds (plus ``font_dirs``); the shipped
encoder was trained with Debian's handwriting packages installed, and without them the
simulator warns and the record says which faces were missing.
"""

import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from pe_jax.models.classifier import ConvNet, ConvNetConfig, build
from pe_jax.training.classifier import train

__all__ = ["train_encoder"]


def train_encoder(config: ml_collections.ConfigDict, *,
                  font_dirs: Sequence[str | pathlib.Path] | None = None,
                  progress: bool = False) -> tuple[ConvNet, dict[str, Any]]:
    """Trains an encoder on glyphs as ``config`` says; returns it and a training record.

    ``font_dirs``: folders of extra font files for the glyphs (``GlyphGenerator``);
    ``progress``: a bar over the training steps.
    """
    from pe_jax.apis.glyphs import GlyphGenerator, describe_priors

    generator = GlyphGenerator(characters=config.characters, resolution=config.resolution,
                               font_dirs=font_dirs)
    pose = list(generator.priors)
    model_config = ConvNetConfig(resolution=config.resolution, in_channels=1,
                                 outputs=len(config.characters) + len(pose),
                                 channels=tuple(config.channels), hidden=config.hidden)
    model = build(model_config, config.seed)
    classes = len(config.characters)
    mean = jnp.asarray([generator.priors[p].mean for p in pose])
    std = jnp.asarray([generator.priors[p].std for p in pose])

    def batch_fn(key, step):
        samples = generator.random(key, config.batch_size)
        targets = jnp.stack([getattr(samples, p) for p in pose], axis=-1)
        return generator.images(samples), samples.char, (targets - mean) / std

    def loss_fn(model, batch, key):
        images, chars, poses = batch
        out = model(images)
        ce = optax.softmax_cross_entropy_with_integer_labels(out[:, :classes], chars).mean()
        return ce + config.pose_weight * jnp.mean((out[:, classes:] - poses) ** 2)

    losses = train(model, loss_fn, batch_fn, steps=config.steps,
                   learning_rate=config.learning_rate, key=jax.random.key(config.seed + 1),
                   progress=progress, desc="train-encoder")
    # Held-out glyphs (a key never used in training): character accuracy.
    images, chars, _ = batch_fn(jax.random.key(config.seed + 2), 0)
    accuracy = float(jnp.mean(jnp.argmax(model(images)[:, :classes], -1) == chars))
    record = {
        "model": model_config.to_dict(),
        "pose_outputs": pose,
        "fonts": list(generator.fonts),
        "font_files": generator.font_description["files"],
        "handwriting_packages_missing":
            generator.font_description["handwriting_packages_missing"],
        "priors": describe_priors(generator.priors),
        "loss_per_100_steps": [round(v, 4) for v in losses],
        "heldout_glyph_accuracy": accuracy,
        "data": "rendered glyphs from pe_jax.apis.glyphs.GlyphGenerator only (public)",
    }
    return model, record
