"""What a run writes: image grids, the synthetic samples and the privacy report.

Output folders hold synthetic data and released statistics only. Nothing here is given
private data; a folder that already holds files is never written into, so no earlier result
is overwritten.
"""

import json
import math
import pathlib
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Final

import numpy as np
from PIL import Image

from pe_jax import privacy
from pe_jax._checks import check_int, require
from pe_jax.privacy.accounting import ACCOUNTANT

GRID_CELL_PIXELS = 32
GRID_GAP_PIXELS = 2
GRID_GAP_VALUE = 0.35


def check_output_dir(path: str | pathlib.Path) -> pathlib.Path:
    """``path`` if a new run may write there: it is missing or an empty folder."""
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out must name a new or empty folder; {str(path)!r} is a file")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"--out must name a new or empty folder; {str(path)!r} lies under "
                         f"the file {str(parent)!r}")
    if path.exists() and any(path.iterdir()):
        raise ValueError(
            f"output folder {str(path)!r} already exists and is not empty; choose a new --out "
            "so that earlier results are kept")
    return path


def prepare_output_dir(path: str | pathlib.Path) -> pathlib.Path:
    """Creates ``path`` for a new run; refuses a folder that already holds files."""
    path = check_output_dir(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def image_grid(images: np.ndarray, labels: np.ndarray, num_classes: int,
               columns: int = 16) -> np.ndarray:
    """One row per class holding its first ``columns`` images, as a uint8 picture.

    Cells are enlarged to about ``GRID_CELL_PIXELS`` and separated by grey lines.
    """
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    scale = max(1, GRID_CELL_PIXELS // max(images.shape[1:3]))
    images = np.repeat(np.repeat(images, scale, axis=1), scale, axis=2)
    _, height, width, channels = images.shape
    step_y, step_x = height + GRID_GAP_PIXELS, width + GRID_GAP_PIXELS
    grid = np.full((num_classes * step_y - GRID_GAP_PIXELS, columns * step_x - GRID_GAP_PIXELS,
                    channels), GRID_GAP_VALUE, np.float32)
    for c in range(num_classes):
        for j, i in enumerate(np.flatnonzero(labels == c)[:columns]):
            grid[c * step_y:c * step_y + height, j * step_x:j * step_x + width] = images[i]
    picture = (grid * 255).round().astype(np.uint8)
    return picture[..., 0] if channels == 1 else picture


def grid_caption(labels: np.ndarray, num_classes: int, columns: int = 16) -> str:
    """What ``image_grid`` shows, in words: "the first 16 of 100 per class; ..."."""
    labels = np.asarray(labels)
    counts = np.bincount(labels[(labels >= 0) & (labels < num_classes)].astype(np.int64),
                         minlength=num_classes)[:num_classes]
    shown = np.minimum(counts, columns)
    if counts.min() == counts.max():
        which = "all" if shown[0] == counts[0] else "the first"
        what = f"{which} {shown[0]} of {counts[0]} per class"
    else:
        what = (f"the first {shown.min()}-{shown.max()} of {counts.min()}-{counts.max()} "
                "per class")
    return f"{what}; one row per class, class 0 on top"


CAPTION_PIXELS = 18


def save_image_grid(path: pathlib.Path, images: np.ndarray, labels: np.ndarray,
                    num_classes: int, columns: int = 16, caption: bool | str = True) -> None:
    """Writes ``image_grid`` as a PNG, under a caption line: ``grid_caption`` (how many of how
    many samples per class it shows) when ``caption`` is True, the given text, or none when
    False. The caption is also stored in the PNG's ``Description`` text chunk."""
    picture = Image.fromarray(image_grid(images, labels, num_classes, columns))
    if caption is True:
        caption = "Showing " + grid_caption(labels, num_classes, columns)
    if not caption:
        picture.save(path)
        return
    from PIL import ImageDraw, ImageFont, PngImagePlugin

    try:
        font = ImageFont.load_default(size=CAPTION_PIXELS - 6)
    except (TypeError, OSError):  # Pillow without FreeType: its small bitmap font
        font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    text_width = math.ceil(measure.textlength(caption, font=font)) + 8
    white = 255 if picture.mode == "L" else (255,) * len(picture.mode)
    canvas = Image.new(picture.mode, (max(picture.width, text_width),
                                      picture.height + CAPTION_PIXELS), white)
    canvas.paste(picture, (0, CAPTION_PIXELS))
    ImageDraw.Draw(canvas).text((4, 2), caption, font=font,
                                fill=0 if picture.mode == "L" else (0,) * len(picture.mode))
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", caption)
    canvas.save(path, pnginfo=info)


def save_samples(path: pathlib.Path, images: np.ndarray, labels: np.ndarray,
                 class_names: Sequence[str]) -> None:
    """Writes the synthetic images and labels as an ``.npz`` (no pickle)."""
    np.savez_compressed(path, images=np.asarray(images, np.float32),
                        labels=np.asarray(labels, np.int32),
                        class_names=np.asarray(class_names, dtype=np.str_))


NEIGHBOURS: Final = {
    "add_remove": "two data sets are neighbours when one is the other with one protected row "
                  "added or removed",
    "replace_one": "two data sets are neighbours when one is the other with one protected row "
                   "replaced by another",
}
"""What each adjacency relation of ``pe_jax.privacy`` means, in words, for the report."""


def privacy_report(ledger: privacy.PrivacyLedger, *, target_epsilon: float | None,
                   private_data: dict[str, Any], public: dict[str, dict[str, Any]],
                   non_private_outputs: dict[str, str] | None = None,
                   run_start: int = 0, shared_ledger: bool = True,
                   planned_iterations: int | None = None) -> dict:
    """The run's privacy guarantee, per iteration and in total, as JSON-safe values.

    ``private_data`` describes the rows the guarantee protects: ``{"description": one plain
    sentence, "rows": how many, ...free JSON details}``. ``public`` maps a short name to
    ``{"description": one plain sentence on what it is and where it came from, ...details}``
    for everything the run treated as public (outside the guarantee), such as the generator,
    the embedding, held-out rows and the settings. ``non_private_outputs`` maps a path in the
    output folder to one sentence on what it holds that the guarantee does not cover (e.g.
    metrics on held-out rows). The run's releases are the ledger's events from ``run_start``
    on; earlier ones came from earlier runs sharing the ledger (``pe-jax run --ledger``).
    ``shared_ledger=False`` says the ledger's file (if any) is the run's own, not one that
    runs share. ``planned_iterations`` marks the report of a run that has not finished (it
    is going on, or was interrupted) and says how many iterations it plans; None: finished.

    A run is NOT differentially private if any of its releases had no noise or seeded noise
    (``not_private_because`` says which); its epsilon is then null.
    """
    import jax

    private_data = _check_private_data(private_data)
    public = {_check_name("public", name): _check_described(f"public[{name!r}]", entry)
              for name, entry in _check_dict("public", public).items()}
    outputs = {_check_name("non_private_outputs", path): _check_sentence(
        f"non_private_outputs[{path!r}]", text)
        for path, text in _check_dict("non_private_outputs", non_private_outputs or {}).items()}
    run_start = check_int("run_start", run_start, 0, len(ledger))
    events = ledger.events[run_start:]
    reasons = _not_private_reasons(events)
    private = not reasons
    history = ledger.epsilon_history(run_start) if private else None
    composed_private = not _not_private_reasons(ledger.events)
    if planned_iterations is not None:
        planned_iterations = check_int("planned_iterations", planned_iterations, 1)
    return {
        "complete": planned_iterations is None,
        "planned_iterations": planned_iterations,
        # JSON has no infinity: a run that is not private has epsilon null.
        "differentially_private": private,
        "not_private_because": reasons,
        "epsilon": ledger.epsilon_spent(run_start) if private else None,
        "target_epsilon": target_epsilon,
        "delta": ledger.delta,
        "iterations": len(events),
        "noise_multiplier": sorted({e.noise_multiplier for e in events}),
        "votes_per_row": sorted({e.k for e in events}),
        "mechanism": sorted({e.mechanism for e in events}),
        "adjacency": ledger.adjacency,
        "neighbouring_data_sets": NEIGHBOURS[ledger.adjacency],
        "sensitivity": (f"L2 {'sqrt(2)' if ledger.adjacency == 'replace_one' else '1'} per "
                        "iteration: each private row casts k votes of weight 1/sqrt(k), in its "
                        "own class only"),
        "accountant": ACCOUNTANT,
        "randomness": sorted({e.source for e in events}),
        # Epsilon spent by this run after each of its iterations, and what each one added.
        "epsilon_cumulative": history,
        "epsilon_increment_per_iteration": (
            None if history is None else [b - a for a, b in zip([0.0, *history], history)]),
        "private_data": private_data,
        "public": public,
        "non_private_outputs": outputs,
        "composed": {
            "ledger_file": None if ledger.path is None or not shared_ledger else str(ledger.path),
            "releases_before_this_run": run_start,
            "releases": len(ledger),
            # What the ledger composed: its events per mechanism (DP-SGD segments, PE releases).
            "mechanisms": dict(sorted(Counter(e.mechanism for e in ledger.events).items())),
            "differentially_private": composed_private,
            "epsilon": ledger.epsilon_spent() if composed_private else None,
            "epsilon_budget": ledger.epsilon_budget,
        },
        "jax": {"version": jax.__version__, "backend": jax.default_backend()},
        "ledger": ledger.to_dict(),
    }


def _not_private_reasons(events: Sequence[privacy.ReleaseEvent]) -> list[str]:
    """Why releases ``events`` give no DP guarantee, in words (empty when they do)."""
    reasons = []
    clean = sum(e.mechanism == privacy.NON_PRIVATE for e in events)
    if clean:
        reasons.append(f"{clean} release(s) were made without noise (non_private=True): the "
                       "clean vote counts were published")
    seeded = sorted({e.source for e in events if e.seeded})
    if seeded:
        reasons.append(
            f"{sum(e.seeded for e in events)} release(s) drew their noise from a seeded "
            f"generator ({', '.join(seeded)}): whoever knows or guesses the seed can recompute "
            "the noise and subtract it, recovering the clean vote counts")
    return reasons


def _check_dict(name: str, value: object) -> dict:
    require(isinstance(value, dict), name, "a dict", type(value).__name__)
    return value


def _check_name(name: str, key: object) -> str:
    require(isinstance(key, str) and key != "", f"{name} keys", "non-empty strings", key)
    return key


def _check_sentence(name: str, text: object) -> str:
    require(isinstance(text, str) and text.strip() != "", name, "a non-empty sentence", text)
    return text


def _check_described(name: str, entry: object) -> dict:
    entry = _check_dict(name, entry)
    _check_sentence(f"{name}['description']", entry.get("description"))
    return entry


def _check_private_data(private_data: object) -> dict:
    private_data = _check_described("private_data", private_data)
    check_int("private_data['rows']", private_data.get("rows"), 0)
    return private_data


def guarantee(report: dict) -> str:
    """The guarantee of a ``privacy_report`` in a few words, e.g. ``(3.97, 1e-05)-DP``."""
    if report["differentially_private"]:
        return f"({report['epsilon']:.4g}, {report['delta']:.3g})-DP"
    return "NOT differentially private"


def composed_total(report: dict) -> str:
    """What all releases in the report's ledger compose to, e.g. ``epsilon 5.93``."""
    composed = report["composed"]
    if composed["differentially_private"]:
        return f"epsilon {composed['epsilon']:.4g}"
    return "NOT differentially private"


def composed_mechanisms(report: dict) -> str:
    """The ledger's events per mechanism in words, e.g. "2 DP-SGD, 3 discrete_gaussian"."""
    return ", ".join(f"{count} {mechanism}"
                     for mechanism, count in report["composed"]["mechanisms"].items())


def write_privacy_report(out_dir: pathlib.Path, report: dict) -> None:
    """Writes ``privacy.json`` and ``privacy.txt``, a plain-words account that stands alone."""
    (out_dir / "privacy.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "privacy.txt").write_text(_privacy_text(report))


def _privacy_text(report: dict) -> str:
    """The report in words: guarantee, protected rows, mechanism, ledger, what is public."""
    epsilon, delta, data = report["epsilon"], report["delta"], report["private_data"]
    lines = ["PRIVACY REPORT", ""]
    if not report["complete"]:
        lines += [f"INCOMPLETE: the run plans {report['planned_iterations']} iterations and "
                  f"has recorded {report['iterations']} releases so far. It was interrupted or "
                  "is still going; everything below covers the releases recorded so far "
                  "(pe-jax run --resume <this folder> continues it).", ""]
    lines.append("Guarantee")
    if report["differentially_private"]:
        change = ("added or removed" if report["adjacency"] == "add_remove" else
                  "replaced by another")
        lines += [
            f"  This run is ({epsilon:.4g}, {delta:.3g})-differentially private with respect to "
            "the protected rows below.",
            "  In words: the probability of any outcome of this run changes by at most a factor "
            f"e^{epsilon:.4g} = {math.exp(epsilon):.4g} when one protected row is {change}, "
            f"apart from a probability of at most {delta:.3g}."]
        if report["target_epsilon"] is not None:
            lines.append(f"  The run was calibrated to spend at most epsilon "
                         f"{report['target_epsilon']:.4g}.")
    else:
        lines.append("  This run is NOT differentially private: it gives no privacy guarantee.")
        lines += [f"  - {reason}." for reason in report["not_private_because"]]
    lines += [
        f"  Neighbouring data sets ({report['adjacency']} adjacency): "
        f"{report['neighbouring_data_sets']}.",
        "  Everything in this folder depends on the protected rows only through the noisy "
        "releases (post-processing), except what 'Not covered' lists below.",
        "",
        "Protected rows",
        f"  {data['description']} ({data['rows']:,} rows).",
        "",
        "How"]
    # A report may say how its releases were made (DP-SGD does); PE's vote releases otherwise.
    lines += report.get("how") or [
        f"  {report['iterations']} releases, one per iteration, each a histogram of votes: "
        f"every protected row casts k = {_join(report['votes_per_row'])} vote(s) of weight "
        "1/sqrt(k) for its nearest synthetic samples of its own class, so one row changes a "
        f"release by L2 norm {'sqrt(2)' if report['adjacency'] == 'replace_one' else '1'}.",
        f"  Noise: {_join(report['mechanism'])}, noise multiplier sigma = "
        f"{_join(f'{s:.4g}' for s in report['noise_multiplier'])} (integer noise of scale "
        f"sigma * sqrt(k) added to each vote count), drawn from {_join(report['randomness'])}.",
        f"  Accountant: {report['accountant']}."]
    if report["epsilon_cumulative"] is not None:
        step = "ledger event" if report.get("how") else "iteration"  # PE: one per iteration
        lines.append(f"  Epsilon spent after each {step}: "
                     + ", ".join(f"{e:.4g}" for e in report["epsilon_cumulative"]) + ".")
    lines += ["", "Ledger", _ledger_text(report), "",
              "Treated as public (outside the guarantee, not protected)"]
    lines += [f"  - {name}: {entry['description']}" for name, entry in report["public"].items()]
    if not report["public"]:
        lines.append("  - nothing listed")
    lines += ["", "Not covered by the guarantee, beside this file"]
    lines += [f"  - {path}: {text}" for path, text in report["non_private_outputs"].items()]
    if not report["non_private_outputs"]:
        lines.append("  - nothing")
    lines += ["", f"All numbers, every release and the full ledger: privacy.json. JAX "
                  f"{report['jax']['version']} on {report['jax']['backend']}."]
    return "".join(_wrap(line) + "\n" for line in lines)


def _wrap(paragraph: str, width: int = 96) -> str:
    """One paragraph of the text report, wrapped, its continuation lines indented."""
    indent = " " * (len(paragraph) - len(paragraph.lstrip()) + 2)
    return (textwrap.fill(paragraph, width, subsequent_indent=indent, break_on_hyphens=False)
            if paragraph else "")


def _ledger_text(report: dict) -> str:
    """Where this run's releases were recorded and what they compose to."""
    composed = report["composed"]
    if composed["ledger_file"] is None:
        return ("  This run started a fresh ledger: a rerun on the same data is a separate "
                "release whose epsilon adds up with this one's (pe-jax run --ledger FILE "
                "composes runs in one ledger).")
    budget = ("no budget" if composed["epsilon_budget"] is None else
              f"budget epsilon {composed['epsilon_budget']:.4g}")
    return (f"  Recorded in the ledger file {composed['ledger_file']}, after "
            f"{composed['releases_before_this_run']} earlier releases: all "
            f"{composed['releases']} releases together are {composed_total(report)} at delta "
            f"{report['delta']:.3g} ({budget}; composed: {composed_mechanisms(report)}).")


def _join(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)
