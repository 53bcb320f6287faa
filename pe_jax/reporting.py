"""What a run writes: image grids, the synthetic samples and the privacy report.

Output folders hold synthetic data and released statistics only. Nothing here is given
private data; a folder that already holds files is never written into, so no earlier result
is overwritten.
"""

import json
import pathlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from pe_jax import privacy
from pe_jax.privacy.accounting import ACCOUNTANT

GRID_CELL_PIXELS = 32
GRID_GAP_PIXELS = 2
GRID_GAP_VALUE = 0.35


def prepare_output_dir(path: str | pathlib.Path) -> pathlib.Path:
    """Creates ``path`` for a new run; refuses a folder that already holds files."""
    path = pathlib.Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ValueError(
            f"output folder {str(path)!r} already exists and is not empty; choose a new --out "
            "so that earlier results are kept")
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


def save_image_grid(path: pathlib.Path, images: np.ndarray, labels: np.ndarray,
                    num_classes: int, columns: int = 16) -> None:
    """Writes ``image_grid`` as a PNG."""
    Image.fromarray(image_grid(images, labels, num_classes, columns)).save(path)


def save_samples(path: pathlib.Path, images: np.ndarray, labels: np.ndarray,
                 class_names: Sequence[str]) -> None:
    """Writes the synthetic images and labels as an ``.npz`` (no pickle)."""
    np.savez_compressed(path, images=np.asarray(images, np.float32),
                        labels=np.asarray(labels, np.int32),
                        class_names=np.asarray(class_names, dtype=np.str_))


def privacy_report(ledger: privacy.PrivacyLedger, *, target_epsilon: float | None,
                   public: dict[str, object]) -> dict:
    """The run's privacy guarantee, per iteration and in total, as JSON-safe values.

    ``public`` lists what the run treated as public (and so outside the guarantee), such as
    per-class sample counts, the generator and the embedding.
    """
    import jax

    events = ledger.events
    history = ledger.epsilon_history()
    private = all(e.mechanism != privacy.NON_PRIVATE for e in events)
    return {
        # JSON has no infinity: a run with a non-private release has epsilon null.
        "differentially_private": private,
        "epsilon": ledger.epsilon_spent() if private else None,
        "target_epsilon": target_epsilon,
        "delta": ledger.delta,
        "iterations": len(events),
        "noise_multiplier": sorted({e.noise_multiplier for e in events}),
        "mechanism": sorted({e.mechanism for e in events}),
        "adjacency": ledger.adjacency,
        "sensitivity": (f"L2 {'sqrt(2)' if ledger.adjacency == 'replace_one' else '1'} per "
                        "iteration: each private row casts k votes of weight 1/sqrt(k), in its "
                        "own class only"),
        "accountant": ACCOUNTANT,
        "randomness": sorted({e.source for e in events}),
        "epsilon_per_iteration": history if private else None,
        "epsilon_increment_per_iteration": (
            [b - a for a, b in zip([0.0, *history], history)] if private else None),
        "public": public,
        "jax": {"version": jax.__version__, "backend": jax.default_backend()},
        "ledger": ledger.to_dict(),
    }


def write_privacy_report(out_dir: pathlib.Path, report: dict) -> None:
    """Writes ``privacy.json`` and a short human-readable ``privacy.txt``."""
    (out_dir / "privacy.json").write_text(json.dumps(report, indent=2) + "\n")
    sigma = ", ".join(f"{s:.4g}" for s in report["noise_multiplier"])
    guarantee = (f"({report['epsilon']:.4g}, {report['delta']:.3g})-DP"
                 if report["differentially_private"] else
                 "NOT differentially private (a release was made without noise)")
    lines = [
        f"{guarantee} under {report['adjacency']} adjacency",
        f"sensitivity: {report['sensitivity']}",
        f"T = {report['iterations']} releases, noise multiplier sigma = {sigma}, "
        f"mechanism: {', '.join(report['mechanism'])}, noise from "
        f"{', '.join(report['randomness'])}",
        f"accountant: {report['accountant']}",
        f"JAX {report['jax']['version']} on {report['jax']['backend']}",
        "treated as public: " + ", ".join(report["public"]),
    ]
    if report["target_epsilon"] is not None:
        lines.append(f"target epsilon: {report['target_epsilon']:.4g}")
    (out_dir / "privacy.txt").write_text("\n".join(lines) + "\n")
