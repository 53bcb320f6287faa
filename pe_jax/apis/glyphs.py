"""A font-rendering simulator of characters: PE's default public generator.

Private Evolution needs a generator that has never seen the private data. Rendered glyphs are
public by construction: every sample is a character drawn from a font file that ships with
matplotlib (DejaVu, STIX, Computer Modern) or, where installed, from Debian's handwriting-style
font packages, posed by a random affine map and stroke weight. Many faces under many poses
cover a good part of how people write digits and letters, which is what PE needs to start
from: it cannot create what the generator never produces, only select and refine it.

Fonts: without the handwriting packages (``HANDWRITING_PACKAGES``) only matplotlib's faces are
found, fewer than the shipped priors, encoder and diffusion prior were made with, and the
samples cover handwriting worse; ``discover_fonts`` then warns once per process
(``MissingFontsWarning``) and says how to get them. Font files from any folder are added with
``font_dirs=[...]`` (or the environment variable ``PE_JAX_FONT_DIRS``, folders separated by
``os.pathsep``, which every command honours); ``describe_fonts`` records which faces were used.

A sample is not a bitmap but its parameters (:class:`GlyphSamples`): which font, which
character (the class label), and a continuous pose (rotation, slant, scale, aspect, shift,
stroke weight, blur, intensity). ``images`` renders them with pure JAX: each glyph is stored
once, at construction, as a signed distance field in a jnp atlas, offset by the face's own
stroke half-width so that the ink of every face at weight ``w`` is where the field is below
``w`` (stroke weight is one continuous parameter across thin and bold faces, not a choice among
pre-rendered weights). An output pixel takes ``supersample**2`` points mapped through the
inverse pose into the atlas and looked up bilinearly. The sub-pixel ink is then filtered by
a box of one output pixel convolved with a Gaussian of ``blur`` (a fraction of the image side):
with blur 0 this is exactly how scikit-learn's 8x8 digits were made (4x4 blocks of a 32x32
bitmap counted), and a little blur mimics their soft strokes.

``variation(key, samples, degree)`` with ``degree`` in [0, 1]: each continuous parameter
moves by Gaussian noise with standard deviation ``degree`` times its prior standard deviation
(so degree 1 is about as varied as ``random``), clipped to its range; the font is redrawn
uniformly with probability ``degree**2`` (rare for small steps, certain at degree 1). The
character never changes, so class labels are preserved. Degree 0 returns the samples as
they are. All methods are pure functions of their inputs and keys and run under ``jax.jit``.

Any set of distinct characters can be drawn (``DIGITS``, ``LETTERS``, ``ALPHANUMERIC`` or your
own string); a font is used only if it draws every one of them as a distinct glyph, so a larger
set may use fewer faces. Resolutions from 8x8 (scikit-learn's digits) to 64x64 are served by
the same atlas, which grows with the resolution. The same simulator is the public training
data of the diffusion prior (``pe_jax.training.public_data``).
"""

import copy
import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import string
import warnings
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ALPHANUMERIC", "DEFAULT_PRIORS", "DEFAULT_PRIORS_ORIGIN", "DIGITS", "FONT_DIRS_ENV",
           "HANDWRITING_PACKAGES", "LETTERS", "PARAMETERS", "GlyphGenerator", "GlyphSamples",
           "MissingFontsWarning", "ParamPrior", "describe_fonts", "describe_priors",
           "discover_fonts", "missing_handwriting_packages"]

DIGITS = string.digits
LETTERS = string.ascii_uppercase + string.ascii_lowercase
ALPHANUMERIC = DIGITS + LETTERS
"""Character sets for ``characters``: a sample's label is its character's index in the string."""

HANDWRITING_PACKAGES = {
    "humor-sans": "fonts-humor-sans",
    "fifthhorseman": "fonts-dkg-handwriting",
    "bwht": "fonts-bwht",
    "breip": "fonts-breip",
    "comic-neue": "fonts-comic-neue",
    "dancingscript": "fonts-dancingscript",
}
"""Debian's handwriting-style font packages, by the folder (under /usr/share/fonts/<format>/)
they install into.

fonts-femkeklaver is left out: it draws hollow outlines, which thicken into blobs.
"""

HANDWRITING_FONT_DIRS = tuple(HANDWRITING_PACKAGES)
"""The folders of ``HANDWRITING_PACKAGES``."""

FONT_DIRS_ENV = "PE_JAX_FONT_DIRS"
"""Environment variable naming extra font folders (``os.pathsep``-separated) that
``discover_fonts`` searches when it is not given ``font_dirs``."""


class MissingFontsWarning(UserWarning):
    """The glyph simulator lacks the handwriting faces the shipped models were made with."""


_CHECK_SIZE = 48  # pixel size at which discover_fonts renders glyphs to validate a font
_SDF_BOX = 128  # pixels of the glyph's longer side when computing its distance field
_DOMAIN = 1.5  # the atlas covers [-_DOMAIN, _DOMAIN]^2 glyph units; the glyph fits [-1, 1]
_OUTSIDE = 10.0  # distance returned outside the atlas (far from any ink)
_MIN_ATLAS = 64  # default atlas side; larger images get 2 atlas pixels per output pixel


class ParamPrior(NamedTuple):
    """Prior of one continuous pose parameter: N(mean, std) clipped to [low, high]."""

    mean: float
    std: float
    low: float
    high: float


PARAMETERS = {
    "rotation": "radians; positive turns the glyph clockwise on screen",
    "shear": "horizontal shift per unit height; positive leans the top to the right",
    "scale": "glyph height (its tight box, before stroke weight) over image height",
    "aspect": "horizontal over vertical stretch",
    "shift_x": "offset as a fraction of the image half-width, to the right",
    "shift_y": "offset as a fraction of the image half-width, down",
    "weight": "stroke half-width in glyph units (the glyph's longer side is 2 units), any face",
    "blur": "Gaussian blur sigma as a fraction of the image side",
    "intensity": "brightness of full ink",
}
"""The continuous pose parameters of a glyph and their units, in sampling order."""

SHIPPED_PRIORS = pathlib.Path(__file__).resolve().parent.parent / "assets" / "glyph_priors.json"
"""The shipped priors and their origin, as written by ``experiments/fit_glyph_priors.py``."""


def _load_shipped() -> tuple[dict[str, ParamPrior], dict]:
    shipped = json.loads(SHIPPED_PRIORS.read_text())
    priors = {name: ParamPrior(**shipped["priors"][name]) for name in PARAMETERS}
    return priors, shipped["origin"]


DEFAULT_PRIORS, DEFAULT_PRIORS_ORIGIN = _load_shipped()
"""Priors of ``random`` (their ``std`` also scales the noise of ``variation``), and where they
came from.

They were fitted to the held-out rows of scikit-learn's digits only (the rows that
``LabelledImages.split(0.25)`` holds out with the fixed salt ``pe_jax/heldout/v1``; never the
private rows of a run) by ``experiments/fit_glyph_priors.py`` (``pe_jax.apis.glyph_priors``):
each held-out digit is matched to its nearest glyph of the same class, drawn first from generic
broad priors and then from the previous fit, and robust quantiles of the matched poses give
mean, std and range. The values and the full origin (rows, salt, method, fonts, command) are in
``pe_jax/assets/glyph_priors.json``; a run reports both. For another domain, fit or choose
priors on public or held-out data of it.
"""


def describe_priors(priors: Mapping[str, ParamPrior]) -> dict:
    """JSON-safe values of ``priors`` and their origin, for configs, metadata and reports.

    The origin is ``DEFAULT_PRIORS_ORIGIN`` when the priors are the shipped ones, and says
    that the caller chose them otherwise.
    """
    values = {name: ParamPrior(*p)._asdict() for name, p in priors.items()}
    shipped = values == {name: p._asdict() for name, p in DEFAULT_PRIORS.items()}
    origin = DEFAULT_PRIORS_ORIGIN if shipped else {
        "description": "set by the caller, not the shipped priors; where they came from is "
                       "not recorded by pe_jax"}
    return {"values": values, "origin": origin}


def _merge_priors(priors: Mapping[str, ParamPrior] | None) -> dict[str, ParamPrior]:
    """``DEFAULT_PRIORS`` overridden by ``priors``, checked."""
    unknown = set(priors or {}) - set(DEFAULT_PRIORS)
    if unknown:
        raise ValueError(f"priors has unknown parameters {sorted(unknown)}")
    merged = {**DEFAULT_PRIORS, **{k: ParamPrior(*v) for k, v in (priors or {}).items()}}
    for name, p in merged.items():
        if not (p.low <= p.mean <= p.high and p.std >= 0):
            raise ValueError(f"priors[{name!r}] needs low <= mean <= high, std >= 0: {p}")
    return merged


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GlyphSamples:
    """Parameters of n rendered glyphs; every leaf has shape (n,).

    ``font`` indexes ``GlyphGenerator.fonts``, ``char`` indexes ``GlyphGenerator.characters``
    (it is the class label); the other fields are the pose described in ``PARAMETERS``.
    """

    font: jax.Array
    char: jax.Array
    rotation: jax.Array
    shear: jax.Array
    scale: jax.Array
    aspect: jax.Array
    shift_x: jax.Array
    shift_y: jax.Array
    weight: jax.Array
    blur: jax.Array
    intensity: jax.Array


def _matplotlib_fonts() -> list[pathlib.Path]:
    import matplotlib

    return sorted((pathlib.Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("*.ttf"))


def _handwriting_fonts(font_root: pathlib.Path) -> list[pathlib.Path]:
    paths = []
    for name in HANDWRITING_FONT_DIRS:
        for suffix in ("ttf", "otf"):
            paths.extend(font_root.glob(f"*/{name}/*.{suffix}"))
    return sorted(paths)


def missing_handwriting_packages(font_root: str | pathlib.Path = "/usr/share/fonts"
                                 ) -> list[str]:
    """The ``HANDWRITING_PACKAGES`` with no font file under ``font_root``."""
    root = pathlib.Path(font_root)
    return [package for folder, package in HANDWRITING_PACKAGES.items()
            if not any(root.glob(f"*/{folder}/*.[ot]tf"))]


def _font_dirs(font_dirs: Sequence[str | pathlib.Path] | None) -> list[pathlib.Path]:
    """``font_dirs`` (or, when None, the folders in ``$PE_JAX_FONT_DIRS``), checked."""
    if font_dirs is None:
        font_dirs = [d for d in os.environ.get(FONT_DIRS_ENV, "").split(os.pathsep) if d]
        name = f"${FONT_DIRS_ENV}"
    else:
        if isinstance(font_dirs, (str, pathlib.Path)):
            font_dirs = [font_dirs]
        name = "font_dirs"
    paths = [pathlib.Path(d).expanduser() for d in font_dirs]
    bad = [str(p) for p in paths if not p.is_dir()]
    if bad:
        raise ValueError(f"{name} must name existing folders of .ttf/.otf font files; "
                         f"not folders: {bad}")
    return paths


def _folder_fonts(folder: pathlib.Path) -> list[pathlib.Path]:
    """Every .ttf and .otf file under ``folder``, at any depth."""
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in (".ttf", ".otf") and p.is_file())


_WARNED: set[tuple[str, ...]] = set()  # missing-package lists already warned about


def _warn_missing_handwriting(missing: list[str], faces: int) -> None:
    """Warns, once per process for each list of missing packages, that handwriting faces
    are absent and how to get them."""
    if not missing or tuple(missing) in _WARNED:
        return
    _WARNED.add(tuple(missing))
    shipped = len(DEFAULT_PRIORS_ORIGIN.get("fonts", ()))
    warnings.warn(
        f"pe_jax glyph simulator: Debian's handwriting font packages are missing "
        f"({', '.join(missing)}), so glyphs are drawn in only the {faces} faces found here "
        f"(matplotlib's own and any others installed). The shipped glyph priors, encoder and "
        f"diffusion prior were made with {shipped} faces, all six packages installed; with "
        f"fewer faces the samples cover handwriting worse (about 15 points lower downstream "
        f"accuracy on scikit-learn's digits was seen). Install them with: sudo apt-get "
        f"install {' '.join(missing)} ; or put handwriting .ttf/.otf files in a folder and "
        f"pass it: GlyphGenerator(font_dirs=[DIR]), "
        f"pe-jax train-encoder --font-dir DIR, or {FONT_DIRS_ENV}=DIR for every command. "
        f"Each run records the faces it used.", MissingFontsWarning, stacklevel=3)


def describe_fonts(paths: Sequence[str | pathlib.Path]) -> dict:
    """Which faces a set of font files is, for run records: their names and files, how many
    came from matplotlib, and which ``HANDWRITING_PACKAGES`` are among them and missing."""
    paths = [pathlib.Path(p) for p in paths]
    bundled = set(_matplotlib_fonts())
    folders = {p.parent.name for p in paths}
    used = [package for folder, package in HANDWRITING_PACKAGES.items() if folder in folders]
    return {
        "faces": [p.name for p in paths],
        "files": [str(p) for p in paths],
        "count": len(paths),
        "matplotlib_faces": sum(p in bundled for p in paths),
        "handwriting_packages": used,
        "handwriting_packages_missing": [p for p in HANDWRITING_PACKAGES.values()
                                         if p not in used],
    }


def _draw(font, char: str) -> np.ndarray:
    """A character drawn with a PIL font, as uint8 on a canvas that holds it with margin."""
    from PIL import Image, ImageDraw

    size = int(font.size)
    image = Image.new("L", (3 * size, 3 * size), 0)
    ImageDraw.Draw(image).text((size, size), char, fill=255, font=font)
    return np.asarray(image)


def _glyph_name_matches(face, char: str) -> bool:
    """False when the font's glyph name for ``char`` names another character.

    Checked for ASCII letters and digits only, where Adobe glyph names are known ("A",
    "zero", "uni0030"); custom-encoded symbol fonts (cmsy10, cmex10) put other symbols at
    those code points. Fonts without glyph names pass.
    """
    if not (char.isascii() and char.isalnum()):
        return True
    index = face.get_charmap().get(ord(char), 0)
    name = face.get_glyph_name(index) if index else ""
    if not name or name.startswith(("glyph", "gid", ".")):
        return True
    digit_names = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    expected = (digit_names[int(char)] if char.isdigit() else char, f"uni{ord(char):04X}")
    return name.startswith(expected)


def _usable_glyphs(path: pathlib.Path, characters: str) -> list[np.ndarray] | None:
    """Renders ``characters`` with the font at ``path``, or None if it lacks any of them.

    A font must map every character to a glyph with ink that differs from its missing-glyph
    box and from the other characters' glyphs, under the right glyph name.
    """
    from matplotlib.ft2font import FT2Font
    from PIL import ImageFont

    try:
        face = FT2Font(str(path))
        font = ImageFont.truetype(str(path), _CHECK_SIZE)
    except (OSError, RuntimeError):
        return None
    charmap = face.get_charmap()
    missing = _draw(font, "\U0010fffd")  # a private-use code point: the .notdef glyph
    glyphs = []
    for char in characters:
        if not charmap.get(ord(char), 0) or not _glyph_name_matches(face, char):
            return None
        glyph = _draw(font, char)
        if not glyph.any() or np.array_equal(glyph, missing):
            return None
        glyphs.append(glyph)
    if len({g.tobytes() for g in glyphs}) < len(glyphs):
        return None
    return glyphs


def _check_characters(characters: str) -> None:
    if not isinstance(characters, str) or not characters:
        raise ValueError(f"characters must be a non-empty string, got {characters!r}")
    if len(set(characters)) != len(characters) or any(c.isspace() for c in characters):
        raise ValueError(
            f"characters must be distinct and without whitespace, got {characters!r}"
        )


def discover_fonts(
    characters: str = DIGITS, font_root: str | pathlib.Path = "/usr/share/fonts",
    font_dirs: Sequence[str | pathlib.Path] | None = None,
) -> list[pathlib.Path]:
    """Font files that draw every one of ``characters`` as a distinct glyph, sorted.

    Candidates are matplotlib's bundled TrueType faces, Debian's handwriting-style faces
    under ``font_root`` (see ``HANDWRITING_PACKAGES``) and every .ttf/.otf file under the
    folders ``font_dirs`` (None: those named by ``$PE_JAX_FONT_DIRS``, if set). Symbol and
    fallback fonts (cmex10, cmsy10, STIXSize*, STIXNonUni*, DejaVu*Display, LastResort) are
    rejected because they lack the characters, draw them as the missing-glyph box, draw them
    all alike, or name them as other symbols. Fonts that draw all characters identically to
    an earlier one (the same face under two file names) are kept once.

    Warns (``MissingFontsWarning``, once per process) when handwriting packages are missing
    under ``font_root`` and ``font_dirs`` added no usable face.
    """
    _check_characters(characters)
    extra = [p for d in _font_dirs(font_dirs) for p in _folder_fonts(d)]
    candidates = _matplotlib_fonts() + _handwriting_fonts(pathlib.Path(font_root)) + extra
    found, seen = [], set()
    for path in sorted(set(candidates), key=lambda p: (p.name, str(p))):
        glyphs = _usable_glyphs(path, characters)
        if glyphs is None:
            continue
        digest = hashlib.sha256(b"".join(g.tobytes() for g in glyphs)).hexdigest()
        if digest not in seen:
            seen.add(digest)
            found.append(path)
    if not any(p in extra for p in found):
        _warn_missing_handwriting(missing_handwriting_packages(font_root), len(found))
    return found


def _glyph_sdf(path: pathlib.Path, char: str, atlas_size: int) -> np.ndarray:
    """Signed distance (glyph units) of one glyph on the atlas grid, minus its half-width.

    The glyph's tight bounding box is centred and scaled so its longer side spans [-1, 1];
    the grid covers [-_DOMAIN, _DOMAIN] so dilated strokes still fit.
    """
    from PIL import Image, ImageFont
    from scipy import ndimage

    image = Image.fromarray(_draw(ImageFont.truetype(str(path), 2 * _SDF_BOX), char))
    image = image.crop(image.getbbox())
    width, height = image.size
    factor = _SDF_BOX / max(width, height)
    image = image.resize(
        (max(1, round(width * factor)), max(1, round(height * factor))), Image.LANCZOS
    )
    canvas_size = round(_DOMAIN * _SDF_BOX)
    canvas = Image.new("L", (canvas_size, canvas_size), 0)
    canvas.paste(image, ((canvas_size - image.size[0]) // 2, (canvas_size - image.size[1]) // 2))
    ink = np.asarray(canvas) >= 128
    inside = ndimage.distance_transform_edt(ink)
    pixels = ndimage.distance_transform_edt(~ink) - inside
    # Offset by the stroke's half-width (twice the median depth of ink pixels), so that the
    # ink of any face at stroke weight w is where the field is below w.
    pixels += 2.0 * np.median(inside[ink])
    sdf = Image.fromarray((pixels * (2.0 / _SDF_BOX)).astype(np.float32), mode="F")
    return np.asarray(sdf.resize((atlas_size, atlas_size), Image.BILINEAR), np.float32)


def _box_gaussian_weights(sigma: jax.Array, pixel: jax.Array, point: jax.Array) -> jax.Array:
    """Weights of sub-pixel points for output pixels: a unit box convolved with N(0, sigma^2).

    ``sigma`` (n,), ``pixel`` (r,) and ``point`` (g,) are in output-pixel units; returns
    (n, r, g).
    """
    offset = pixel[:, None] - point[None, :]
    s = jnp.maximum(sigma, 1e-3)[:, None, None] * jnp.sqrt(2.0)
    erf = jax.scipy.special.erf
    return 0.5 * (erf((offset + 0.5) / s) - erf((offset - 0.5) / s))


class GlyphGenerator:
    """Public generator of rendered characters (random + variation APIs, see module docs).

    Args:
      characters: one character per class; a sample's ``char`` (its label) indexes it.
      resolution: height and width of the images, at least 4.
      fonts: font files to draw with; by default ``discover_fonts(characters,
        font_dirs=font_dirs)``.
      font_dirs: folders of extra .ttf/.otf files to draw with besides matplotlib's and
        Debian's (default: ``$PE_JAX_FONT_DIRS``); not with ``fonts``.
      supersample: sub-pixel points per output pixel along each axis.
      atlas_size: side of each glyph's distance field in the atlas; by default
        ``max(64, 2 * resolution)``, so strokes stay sharp at 64x64.
      priors: overrides of ``DEFAULT_PRIORS`` by parameter name.
    """

    def __init__(
        self,
        *,
        characters: str = DIGITS,
        resolution: int = 8,
        fonts: Sequence[str | pathlib.Path] | None = None,
        font_dirs: Sequence[str | pathlib.Path] | None = None,
        supersample: int = 4,
        atlas_size: int | None = None,
        priors: Mapping[str, ParamPrior] | None = None,
    ):
        _check_characters(characters)
        if not isinstance(resolution, int) or resolution < 4:
            raise ValueError(f"resolution must be an int >= 4, got {resolution!r}")
        if not isinstance(supersample, int) or supersample < 1:
            raise ValueError(f"supersample must be an int >= 1, got {supersample!r}")
        if atlas_size is None:
            atlas_size = max(_MIN_ATLAS, 2 * resolution)
        if not isinstance(atlas_size, int) or atlas_size < 16:
            raise ValueError(f"atlas_size must be an int >= 16, got {atlas_size!r}")
        self.priors = _merge_priors(priors)
        if fonts is None:
            paths = discover_fonts(characters, font_dirs=font_dirs)
        elif font_dirs is not None:
            raise ValueError("font_dirs must be None when fonts are given (fonts lists every "
                             f"face to draw with); got {font_dirs!r}")
        else:
            paths = [pathlib.Path(f) for f in fonts]
            bad = [str(p) for p in paths if _usable_glyphs(p, characters) is None]
            if bad:
                raise ValueError(f"fonts lack distinct glyphs for {characters!r}: {bad}")
        if not paths:
            raise ValueError(f"fonts: no usable font draws all of {characters!r}")
        self.characters = characters
        self.num_classes = len(characters)
        self.resolution = resolution
        self.supersample = supersample
        self.font_paths = tuple(paths)
        self.fonts = tuple(p.name for p in paths)
        self.font_description = describe_fonts(paths)
        """Which faces this generator draws with (``describe_fonts``), for run records."""
        self.atlas = jnp.asarray(
            np.stack([[_glyph_sdf(p, c, atlas_size) for c in characters] for p in paths])
        )

    def with_priors(self, priors: Mapping[str, ParamPrior]) -> "GlyphGenerator":
        """This generator (same fonts and atlas, built once) with other pose priors."""
        other = copy.copy(self)
        other.priors = _merge_priors(priors)
        return other

    def _check_labels(self, n: int, labels: jax.Array | None) -> jax.Array | None:
        if labels is None:
            return None
        labels = jnp.asarray(labels)
        if labels.shape != (n,) or not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(f"labels must be an int array of shape ({n},), got "
                             f"{labels.dtype}{labels.shape}")
        if not isinstance(labels, jax.core.Tracer) and labels.size and (
            int(labels.min()) < 0 or int(labels.max()) >= self.num_classes
        ):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        return labels.astype(jnp.int32)

    def random(self, key: jax.Array, n: int, labels: jax.Array | None = None) -> GlyphSamples:
        """Draws n glyphs: uniform font, the given characters (uniform if None), prior pose."""
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        n = int(n)
        labels = self._check_labels(n, labels)
        k_font, k_char, k_pose = jax.random.split(key, 3)
        font = jax.random.randint(k_font, (n,), 0, len(self.fonts), dtype=jnp.int32)
        if labels is None:
            labels = jax.random.randint(k_char, (n,), 0, self.num_classes, dtype=jnp.int32)
        pose = {}
        for k, (name, p) in zip(jax.random.split(k_pose, len(self.priors)), self.priors.items()):
            pose[name] = jnp.clip(p.mean + p.std * jax.random.normal(k, (n,)), p.low, p.high)
        return GlyphSamples(font=font, char=labels, **pose)

    def variation(self, key: jax.Array, samples: GlyphSamples, degree: float) -> GlyphSamples:
        """Draws one glyph near each sample; ``degree`` in [0, 1] sets how far (module docs)."""
        if not isinstance(degree, jax.core.Tracer) and not 0.0 <= float(degree) <= 1.0:
            raise ValueError(f"degree must lie in [0, 1], got {degree!r}")
        n = samples.char.shape[0]
        k_switch, k_font, k_pose = jax.random.split(key, 3)
        switch = jax.random.uniform(k_switch, (n,)) < degree**2
        new_font = jax.random.randint(k_font, (n,), 0, len(self.fonts), dtype=jnp.int32)
        pose = {}
        for k, (name, p) in zip(jax.random.split(k_pose, len(self.priors)), self.priors.items()):
            value = getattr(samples, name)
            noise = degree * p.std * jax.random.normal(k, (n,), value.dtype)
            pose[name] = jnp.clip(value + noise, p.low, p.high)
        return GlyphSamples(font=jnp.where(switch, new_font, samples.font), char=samples.char,
                            **pose)

    def images(self, samples: GlyphSamples) -> jax.Array:
        """Renders the samples: float32 of shape (n, resolution, resolution, 1) in [0, 1]."""
        margin = int(np.ceil(3 * self.priors["blur"].high * self.resolution)) + 1
        return _render_images(self.atlas, samples, resolution=self.resolution,
                              supersample=self.supersample, margin=margin)


@functools.partial(jax.jit, static_argnames=("resolution", "supersample", "margin"))
def _render_images(
    atlas: jax.Array, samples: GlyphSamples, *, resolution: int, supersample: int, margin: int
) -> jax.Array:
    """Rasterizes posed glyphs from the distance-field atlas (see the module docstring).

    ``margin`` output pixels around the image are sampled too, for the blur to reach into.
    """
    r, s = resolution, supersample
    points = (jnp.arange(-margin * s, (r + margin) * s) + 0.5) / s  # in output pixels
    # Output coordinates in [-1, 1] (x right, y down); undo shift, rotation, shear and the
    # anisotropic scale to get glyph coordinates.
    u = points * (2.0 / r) - 1.0
    uy, ux = jnp.meshgrid(u, u, indexing="ij")

    def per_sample(x):
        return x[:, None, None]

    gx, gy = ux[None] - per_sample(samples.shift_x), uy[None] - per_sample(samples.shift_y)
    cos, sin = per_sample(jnp.cos(samples.rotation)), per_sample(jnp.sin(samples.rotation))
    gx, gy = cos * gx + sin * gy, -sin * gx + cos * gy
    gx = gx + per_sample(samples.shear) * gy
    gy = gy / per_sample(samples.scale)
    gx = gx / per_sample(samples.scale * samples.aspect)
    # Glyph coordinates -> atlas pixel indices, then a bilinear lookup of the field.
    scale = atlas.shape[-1] / (2 * _DOMAIN)

    def lookup(sdf, gy, gx):
        index = [(gy + _DOMAIN) * scale - 0.5, (gx + _DOMAIN) * scale - 0.5]
        return jax.scipy.ndimage.map_coordinates(sdf, index, order=1, mode="constant",
                                                 cval=_OUTSIDE)

    field = jax.vmap(lookup)(atlas[samples.font, samples.char], gy, gx)
    # Ink where the field is below the stroke weight, anti-aliased over one sub-pixel step.
    step = (2.0 / (r * s)) / per_sample(samples.scale * jnp.minimum(samples.aspect, 1.0))
    ink = jnp.clip(0.5 - (field - per_sample(samples.weight)) / step, 0.0, 1.0)
    # Box of one output pixel convolved with the blur Gaussian, applied separably.
    weights = _box_gaussian_weights(samples.blur * r, jnp.arange(r) + 0.5, points) / s
    # W ink W^T as two batched matmuls: the one three-operand einsum became a batched dot
    # with transposed operands that XLA's CPU backend ran about 4x slower.
    out = jnp.matmul(jnp.matmul(weights, ink), jnp.swapaxes(weights, 1, 2))
    out = jnp.clip(out * samples.intensity[:, None, None], 0.0, 1.0)
    return out[..., None].astype(jnp.float32)
