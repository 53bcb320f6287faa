"""Downstream accuracy: train a classifier on synthetic data, test it on real data.

The DPImageBench protocol: a small CNN (``pe_jax.models.classifier.ConvNet``, trained by
``pe_jax.training.classifier``) is trained on the labelled synthetic images and its accuracy
is measured on a real held-out test set. Every
method is measured with the same ``Recipe`` (architecture, optimiser, step count, seeds), so
numbers are comparable; the step count is fixed rather than the epoch count, so a method with
more samples gets no more training. The test set is used once, at the end (no model selection
on it).
"""

import dataclasses
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax._checks import check_int, require

if TYPE_CHECKING:
    from pe_jax.models import classifier


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Training settings shared by every method being compared."""

    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 1e-3
    channels: tuple[int, ...] = (32, 64)
    hidden: int = 128
    seed: int = 0


DEFAULT_RECIPE = Recipe()


def downstream_accuracy(train_images: np.ndarray, train_labels: np.ndarray,
                        test_images: np.ndarray, test_labels: np.ndarray, num_classes: int,
                        recipe: Recipe = DEFAULT_RECIPE) -> float:
    """Accuracy on ``test`` of a ConvNet trained on ``train`` with ``recipe``."""
    from pe_jax.training import classifier as trainer

    test_images = np.asarray(test_images)
    require(test_images.shape[1:] == np.shape(train_images)[1:], "images",
            "train and test arrays of shape (n, H, W, C) with the same H, W, C",
            (np.shape(train_images), test_images.shape))
    _check_labels("test_labels", test_labels, len(test_images), num_classes)
    model = train_classifier(train_images, train_labels, num_classes, recipe)
    predicted = np.asarray(trainer.predict(model, jnp.asarray(test_images, jnp.float32)))
    return float(np.mean(predicted == np.asarray(test_labels)))


def train_classifier(train_images: np.ndarray, train_labels: np.ndarray, num_classes: int,
                     recipe: Recipe = DEFAULT_RECIPE) -> "classifier.ConvNet":
    """The ConvNet ``recipe`` trains on ``train`` (its ``embed`` is also a feature space)."""
    from pe_jax.models import classifier
    from pe_jax.training import classifier as trainer

    check_int("num_classes", num_classes, 2)
    train_images = np.asarray(train_images)
    require(train_images.ndim == 4, "images", "train and test arrays of shape (n, H, W, C) "
            "with the same H, W, C", train_images.shape)
    _check_labels("train_labels", train_labels, len(train_images), num_classes)
    config = classifier.ConvNetConfig(
        resolution=train_images.shape[1], in_channels=train_images.shape[3],
        outputs=num_classes, channels=recipe.channels, hidden=recipe.hidden)
    model = classifier.build(config, recipe.seed)
    key = jax.random.key(recipe.seed)
    batches = trainer.epoch_batches(
        jnp.asarray(train_images, jnp.float32), jnp.asarray(train_labels, jnp.int32),
        min(recipe.batch_size, len(train_images)), jax.random.fold_in(key, 1))
    trainer.train(model, trainer.cross_entropy, batches, steps=recipe.steps,
                  learning_rate=recipe.learning_rate, key=jax.random.fold_in(key, 2))
    return model


def _check_labels(name: str, labels: np.ndarray, n: int, num_classes: int) -> None:
    labels = np.asarray(labels)
    require(labels.shape == (n,) and np.issubdtype(labels.dtype, np.integer)
            and labels.min() >= 0 and labels.max() < num_classes, name,
            f"{n} ints in [0, {num_classes})", "other values")
