"""Fonts of the glyph simulator: a warning without the handwriting faces, font folders, and a
record of the faces used.

Debian's handwriting packages are not installed on the development machines, so there the
default is the warned case; the tests use their own font roots so that they hold anywhere.
"""

import json
import pathlib
import shutil
import warnings

import pytest

from pe_jax import checkpoints, cli
from pe_jax.apis import glyphs
from pe_jax.apis.glyphs import (FONT_DIRS_ENV, HANDWRITING_PACKAGES, GlyphGenerator,
                                MissingFontsWarning, describe_fonts, discover_fonts,
                                missing_handwriting_packages)

MATPLOTLIB_TTF = pathlib.Path(__import__("matplotlib").get_data_path()) / "fonts" / "ttf"


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test starts as a fresh process would: nothing warned yet."""
    monkeypatch.setattr(glyphs, "_WARNED", set())
    monkeypatch.delenv(FONT_DIRS_ENV, raising=False)


def _extra_face(folder: pathlib.Path) -> pathlib.Path:
    """A copy of DejaVuSans named to sort first, so it is the copy that is kept (the
    original becomes its duplicate): a face that only ``folder`` provides."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "AAA-extra.ttf"
    shutil.copy(MATPLOTLIB_TTF / "DejaVuSans.ttf", path)
    return path


def test_missing_handwriting_faces_are_warned_once_with_how_to_get_them(tmp_path):
    with pytest.warns(MissingFontsWarning) as caught:
        found = discover_fonts(font_root=tmp_path)
    (warning,) = caught
    message = str(warning.message)
    for package in HANDWRITING_PACKAGES.values():
        assert package in message
    assert "apt-get install" in message and f"{len(found)} faces" in message
    assert "font_dirs" in message and "--font-dir" in message and FONT_DIRS_ENV in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process: a second search is silent
        assert discover_fonts(font_root=tmp_path) == found
        GlyphGenerator(fonts=[MATPLOTLIB_TTF / "DejaVuSans.ttf"])  # chosen fonts: no search


def test_the_default_font_root_here_lacks_the_handwriting_faces():
    missing = missing_handwriting_packages()
    if not missing:
        pytest.skip("Debian's handwriting font packages are installed here")
    with pytest.warns(MissingFontsWarning, match="handwriting font packages are missing"):
        generator = GlyphGenerator()
    assert generator.font_description["handwriting_packages_missing"] == missing
    assert generator.font_description["count"] == len(generator.fonts)


def test_no_warning_when_every_handwriting_package_is_there(tmp_path):
    for folder in HANDWRITING_PACKAGES:
        (tmp_path / "truetype" / folder).mkdir(parents=True)
        shutil.copy(MATPLOTLIB_TTF / "cmr10.ttf", tmp_path / "truetype" / folder / "x.ttf")
    assert missing_handwriting_packages(tmp_path) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        discover_fonts(font_root=tmp_path)


def test_a_font_folder_is_searched_at_any_depth_and_silences_the_warning(tmp_path):
    extra = _extra_face(tmp_path / "myfonts" / "nested")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = discover_fonts(font_root=tmp_path / "none", font_dirs=[tmp_path / "myfonts"])
    assert extra in found
    generator = GlyphGenerator(font_dirs=[tmp_path / "myfonts"])
    assert "AAA-extra.ttf" in generator.fonts
    assert str(extra) in generator.font_description["files"]
    with pytest.raises(ValueError, match="font_dirs must name existing folders"):
        discover_fonts(font_dirs=[tmp_path / "missing"])
    with pytest.raises(ValueError, match="font_dirs must be None when fonts are given"):
        GlyphGenerator(fonts=[extra], font_dirs=[tmp_path / "myfonts"])


def test_the_environment_names_font_folders_for_every_command(tmp_path, monkeypatch):
    extra = _extra_face(tmp_path / "envfonts")
    monkeypatch.setenv(FONT_DIRS_ENV, str(tmp_path / "envfonts"))
    assert extra in discover_fonts(font_root=tmp_path / "none")
    monkeypatch.setenv(FONT_DIRS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=f"\\${FONT_DIRS_ENV} must name existing folders"):
        discover_fonts()


def test_describe_fonts_counts_matplotlib_and_handwriting_faces(tmp_path):
    hand = tmp_path / "truetype" / "comic-neue" / "ComicNeue.ttf"
    described = describe_fonts([MATPLOTLIB_TTF / "DejaVuSans.ttf", hand])
    assert described["faces"] == ["DejaVuSans.ttf", "ComicNeue.ttf"]
    assert described["count"] == 2 and described["matplotlib_faces"] == 1
    assert described["handwriting_packages"] == ["fonts-comic-neue"]
    assert "fonts-comic-neue" not in described["handwriting_packages_missing"]
    assert len(described["handwriting_packages_missing"]) == len(HANDWRITING_PACKAGES) - 1


def test_train_encoder_takes_a_font_folder_shows_progress_and_records_the_faces(tmp_path,
                                                                                capsys):
    extra = _extra_face(tmp_path / "fonts")
    out = tmp_path / "encoder"
    assert cli.main(["train-encoder", "--set", "steps=3", "--set", "batch_size=16",
                     "--font-dir", str(tmp_path / "fonts"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "train-encoder" in captured.err and "3/3" in captured.err
    metadata = checkpoints.load_metadata(out)
    assert "AAA-extra.ttf" in metadata["fonts"] and str(extra) in metadata["font_files"]
    assert f"--font-dir={tmp_path / 'fonts'}" in metadata["command"]
    assert isinstance(metadata["handwriting_packages_missing"], list)
    json.dumps(metadata)  # the record stays JSON
