"""Fitting the glyph simulator's pose priors to real images that are not private.

The glyph simulator (``pe_jax.apis.glyphs``) draws poses from priors; PE only refines what they
produce, so priors close to the real data help, but priors read off the private set leak it
outside the DP guarantee. ``fit_priors`` therefore takes a set of real images that is *not*
private (for the embedded digits default: the fixed held-out rows, ``LabelledImages.split``)
and nothing else. Starting from ``BROAD_PRIORS``, generic wide ranges fitted to no data (any
upright-ish character filling most of a square image), each of ``PASSES`` passes

1. draws ``bank_per_class`` glyphs of every class from the current priors;
2. matches each reference image to its nearest glyph of the same class in pixel space (L2);
3. per pose parameter, takes robust statistics of the matched values as the next priors: the
   median as ``mean``, half the 16-84 % quantile spread as ``std`` (the standard deviation of
   a normal), and the 1 % / 99 % quantiles widened by one ``std`` as ``low`` / ``high``
   (within the current range); all rounded to ``DECIMALS`` decimals.

A nearest glyph in a finite bank is a noisy pose estimate, and a parameter that the 8x8 pixels
barely show (stroke weight against blur and intensity) is matched almost at random from the
bank's priors, so one pass from broad priors stays too wide; each further pass draws its bank
closer to the data and sharpens the matches. On the digits, fitting on one half of the held-out
rows and measuring on the other (mean pixel distance from a digit to the nearest of 2,000
glyphs of its class), passes 1-4 with 20,000 glyphs per class gave 1.44, 1.40, 1.38, 1.38 and
1.48, 1.43, 1.41, 1.41 (the halves swapped), so the fit stops after 3; 10,000 glyphs per class
gave 1.44, 1.40, 1.38 and 1.48, 1.41, 1.40. ``fit_digits_priors`` is the fit of the shipped
``DEFAULT_PRIORS``; it reads the digits' held-out rows only.
"""

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pe_jax._checks import check_int, require
from pe_jax.apis.glyphs import GlyphGenerator, ParamPrior
from pe_jax.data.types import HELDOUT_RULE, HELDOUT_SALT, LabelledImages

__all__ = ["BANK_PER_CLASS", "BROAD_PRIORS", "DECIMALS", "PASSES", "fit_digits_priors",
           "fit_priors"]

BROAD_PRIORS: Mapping[str, ParamPrior] = {
    "rotation": ParamPrior(0.0, 0.3, -0.8, 0.8),
    "shear": ParamPrior(0.0, 0.3, -0.8, 0.8),
    "scale": ParamPrior(0.8, 0.2, 0.4, 1.2),
    "aspect": ParamPrior(1.0, 0.3, 0.4, 1.6),
    "shift_x": ParamPrior(0.0, 0.15, -0.4, 0.4),
    "shift_y": ParamPrior(0.0, 0.15, -0.4, 0.4),
    "weight": ParamPrior(0.2, 0.1, 0.03, 0.45),
    "blur": ParamPrior(0.03, 0.03, 0.0, 0.12),
    "intensity": ParamPrior(0.8, 0.2, 0.4, 1.0),
}
"""Generic starting priors, wide and fitted to no data: centred, about upright glyphs of any
size from 40 % to 120 % of the image, any stretch, shift, weight, blur and brightness within
wide limits (units in ``pe_jax.apis.glyphs.PARAMETERS``). They only bound the search: every
fitted value comes from the held-out digits, inside these ranges."""

BANK_PER_CLASS = 10_000
"""Glyphs drawn per class and pass for the shipped fit (20,000 measured no closer)."""

PASSES = 3
"""Fitting passes of the shipped fit (see the module docstring)."""

DECIMALS = 2
"""Decimals of the fitted values: fits with other bank seeds move the medians and spreads by
about 0.01-0.04."""

_CHUNK = 4096  # glyphs rendered at once


def fit_priors(reference: LabelledImages, *, bank_per_class: int = BANK_PER_CLASS,
               passes: int = PASSES, seed: int = 0, fonts: Sequence[str] | None = None,
               broad: Mapping[str, ParamPrior] = BROAD_PRIORS
               ) -> tuple[dict[str, ParamPrior], dict]:
    """Pose priors fitted to ``reference`` (see the module docstring), and a fit record.

    ``reference`` must not be private data: every pixel of it shapes the result. Its class
    names are drawn as characters, at its resolution. The record holds the reference size, the
    mean pixel distance to the matched glyphs of the last pass and the fonts; the result is a
    pure function of the reference, ``bank_per_class``, ``passes``, ``seed``, the fonts and
    ``broad``.
    """
    images = np.asarray(reference.images, np.float32)
    require(images.shape[3] == 1 and len(images) > 0, "reference",
            "a non-empty set of grey (n, H, W, 1) images", images.shape)
    bank_per_class = check_int("bank_per_class", bank_per_class, 1)
    check_int("passes", passes, 1)
    generator = GlyphGenerator(characters="".join(reference.class_names),
                               resolution=images.shape[1], fonts=fonts, priors=broad)
    priors = dict(generator.priors)
    for step in range(passes):
        matched, distances = _match(generator.with_priors(priors), reference, bank_per_class,
                                    jax.random.fold_in(jax.random.key(seed), step))
        priors = {name: _robust_prior(values, priors[name]) for name, values in matched.items()}
    record = {"reference_rows": len(images), "bank_per_class": bank_per_class,
              "passes": passes, "seed": seed,
              "mean_nearest_distance": round(float(distances.mean()), 4),
              "fonts": list(generator.fonts)}
    return priors, record


def _match(generator: GlyphGenerator, reference: LabelledImages, bank_per_class: int,
           key: jax.Array) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The pose of each reference image's nearest glyph of its class among a fresh bank, and
    the pixel distance to it."""
    images = np.asarray(reference.images, np.float32)
    matched = {name: np.zeros(len(images), np.float32) for name in generator.priors}
    distances = np.zeros(len(images), np.float32)
    for c in range(reference.num_classes):
        rows = np.flatnonzero(reference.labels == c)
        if not len(rows):
            continue
        labels = jnp.full((bank_per_class,), c, jnp.int32)
        bank = generator.random(jax.random.fold_in(key, c), bank_per_class, labels)
        pixels = np.concatenate([
            np.asarray(generator.images(jax.tree.map(lambda a: a[i:i + _CHUNK], bank)))
            for i in range(0, bank_per_class, _CHUNK)]).reshape(bank_per_class, -1)
        real = images[rows].reshape(len(rows), -1)
        d2 = (real**2).sum(1)[:, None] - 2 * real @ pixels.T + (pixels**2).sum(1)[None]
        nearest = d2.argmin(1)
        distances[rows] = np.sqrt(np.maximum(d2[np.arange(len(rows)), nearest], 0.0))
        for name in matched:
            matched[name][rows] = np.asarray(getattr(bank, name))[nearest]
    return matched, distances


def _robust_prior(values: np.ndarray, current: ParamPrior) -> ParamPrior:
    """Median, half the 16-84 % spread and widened 1-99 % quantiles, rounded (module docs)."""
    q01, q16, q50, q84, q99 = np.quantile(values.astype(np.float64), [0.01, 0.16, 0.5, 0.84, 0.99])
    std = (q84 - q16) / 2
    low, high = max(current.low, q01 - std), min(current.high, q99 + std)
    return ParamPrior(*(round(float(v), DECIMALS) for v in (q50, std, low, high)))


def fit_digits_priors(digits: LabelledImages, heldout: float, *,
                      bank_per_class: int = BANK_PER_CLASS, passes: int = PASSES, seed: int = 0,
                      fonts: Sequence[str] | None = None) -> tuple[dict[str, ParamPrior], dict]:
    """``fit_priors`` on the held-out rows of ``digits`` only, with the origin to record.

    The rows are those ``digits.split(heldout)`` holds out, a fixed part of the data set that
    never votes in a run whose ``heldout`` is at least this one (a larger fraction holds out
    a superset); the private rows are dropped before anything is computed.
    """
    _, held_out = digits.split(heldout)
    priors, record = fit_priors(held_out, bank_per_class=bank_per_class, passes=passes,
                                seed=seed, fonts=fonts)
    origin = {
        "description": (
            f"fitted by pe_jax.apis.glyph_priors.fit_digits_priors to the {len(held_out.labels)}"
            f" held-out rows (heldout = {heldout}) of scikit-learn's digits, never to private "
            "rows: each held-out digit matched to its nearest glyph of the same class among "
            f"{bank_per_class} per class, drawn from generic broad priors and then {passes - 1}"
            " more times from the previous fit; robust quantiles of the matched poses"),
        "heldout": heldout, "heldout_salt": HELDOUT_SALT, "heldout_rule": HELDOUT_RULE,
        "broad_priors": {name: p._asdict() for name, p in BROAD_PRIORS.items()},
        **record,
    }
    return priors, origin
