"""Per-iteration logging that people can look at: a CSV, PNG plots, image grids, TensorBoard.

A ``Tracker`` owns one folder::

    metrics.csv              iteration, epsilon, then one column per metric (rewritten each log)
    plots/<metric>.png       the metric against iteration (left) and epsilon spent (right)
    grids/iter_XXX.png       the synthetic images of an iteration, one row per class
    tensorboard/             event files, only with ``tensorboard=True`` (needs tensorboardX)

Only synthetic images and numbers the caller computed are written here; what those numbers
reveal is the caller's concern (see ``pe_jax.metrics``).
"""

import csv
import math
import pathlib
from collections.abc import Mapping

import numpy as np

from pe_jax import reporting
from pe_jax._checks import require

CSV_FILE = "metrics.csv"
PLOT_DIR = "plots"
GRID_DIR = "grids"
TENSORBOARD_DIR = "tensorboard"


class Tracker:
    """Collects ``(iteration, epsilon, {metric: value})`` rows and writes them out."""

    def __init__(self, out_dir: str | pathlib.Path, *, tensorboard: bool = False):
        self.out_dir = pathlib.Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, float]] = []
        self._writer = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as error:
                raise ValueError("tensorboard must be False unless tensorboardX is installed "
                                 "(pip install tensorboardX); got True") from error
            self._writer = SummaryWriter(str(self.out_dir / TENSORBOARD_DIR))

    @property
    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.rows:
            names.update(dict.fromkeys(k for k in row if k not in ("iteration", "epsilon")))
        return list(names)

    def log(self, iteration: int, epsilon: float, values: Mapping[str, float]) -> None:
        """Adds one row, rewrites the CSV and the plots, and writes TensorBoard scalars."""
        require(all(isinstance(v, (int, float)) for v in values.values()), "values",
                "a mapping of metric names to numbers", dict(values))
        self.rows.append({"iteration": iteration, "epsilon": float(epsilon),
                          **{k: float(v) for k, v in values.items()}})
        self._write_csv()
        self._write_plots()
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(f"metrics/{name}", float(value), iteration)
            self._writer.add_scalar("privacy/epsilon", float(epsilon), iteration)
            self._writer.flush()

    def save_grid(self, iteration: int, images: np.ndarray, labels: np.ndarray,
                  num_classes: int) -> pathlib.Path:
        """Writes the images of one iteration as a grid, one row per class."""
        path = self.out_dir / GRID_DIR / f"iter_{iteration:03d}.png"
        path.parent.mkdir(exist_ok=True)
        reporting.save_image_grid(path, np.asarray(images), np.asarray(labels), num_classes)
        if self._writer is not None:
            grid = reporting.image_grid(np.asarray(images), np.asarray(labels), num_classes)
            self._writer.add_image("samples", grid, iteration,
                                   dataformats="HW" if grid.ndim == 2 else "HWC")
            self._writer.flush()
        return path

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def _write_csv(self) -> None:
        columns = ["iteration", "epsilon", *self.metric_names]
        with open(self.out_dir / CSV_FILE, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(self.rows)

    def _write_plots(self) -> None:
        from matplotlib.figure import Figure

        (self.out_dir / PLOT_DIR).mkdir(exist_ok=True)
        for name in self.metric_names:
            points = [(r["iteration"], r["epsilon"], r[name]) for r in self.rows
                      if name in r and math.isfinite(r[name])]
            iterations, epsilons, values = zip(*points) if points else ((), (), ())
            figure = Figure(figsize=(8, 3.2), layout="constrained")
            for axis, x, label in zip(figure.subplots(1, 2), (iterations, epsilons),
                                      ("iteration", "epsilon spent")):
                axis.plot(x, values, marker="o")
                axis.set_xlabel(label)
                axis.set_ylabel(name)
                axis.grid(alpha=0.3)
            figure.suptitle(name)
            figure.savefig(self.out_dir / PLOT_DIR / f"{name}.png", dpi=80)
