"""Per-iteration logging that people can look at: a CSV, PNG plots, image grids, TensorBoard.

A ``Tracker`` owns one folder::

    metrics.csv              iteration, epsilon, then one column per metric (rewritten each log)
    plots/<metric>.png       the metric against iteration (left) and epsilon spent (right)
    grids/iter_XXX.png       the synthetic images of an iteration, one row per class
    tensorboard/             event files, only with ``tensorboard=True`` (needs tensorboardX)

Iteration 0 is the initial population, drawn from the public generator alone before any
private data is used (epsilon 0): logged, it is the baseline that shows what PE added. Each
plot is titled with the metric, the feature space it is measured in and whether lower or
higher is better (``MetricInfo``; ``KNOWN_METRICS`` for pe_jax's metrics), has labelled axes
and a legend, and marks iteration 0 apart from the PE iterations.

Only synthetic images and numbers the caller computed are written here; what those numbers
reveal is the caller's concern (see ``pe_jax.metrics``).
"""

import csv
import dataclasses
import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from pe_jax import reporting
from pe_jax._checks import require

CSV_FILE = "metrics.csv"
PLOT_DIR = "plots"
GRID_DIR = "grids"
TENSORBOARD_DIR = "tensorboard"


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    """How a metric's plot names it: ``label`` (e.g. "FID"), ``better`` ("lower", "higher"
    or None when neither), and whether it is measured in a feature space (``features``)."""

    label: str
    better: str | None = None
    features: bool = False

    def __post_init__(self) -> None:
        require(self.better in (None, "lower", "higher"), "better",
                "'lower', 'higher' or None", self.better)


KNOWN_METRICS = {
    "fid": MetricInfo("FID (Frechet distance to the real reference set)", "lower", True),
    "precision": MetricInfo("precision (share of samples on the real data's manifold)",
                            "higher", True),
    "recall": MetricInfo("recall (share of the real data's manifold covered)", "higher", True),
    "accuracy": MetricInfo("downstream accuracy (a classifier trained on the samples, "
                           "tested on real rows)", "higher"),
}
"""The plots' descriptions of ``pe_jax.metrics``' values; other names are plotted bare."""

FEATURE_SPACES = {
    "encoder": "the glyph encoder's feature space",
    "pixels": "pixel space",
    "random_projection": "a random projection of the pixels",
    "inception": "Inception-v3 pool features",
}
"""Words for an embedding name (``pe_jax.embeddings``) in a plot title."""


def metric_title(name: str, info: MetricInfo | None, feature_space: str | None) -> str:
    """``"FID (...) in the glyph encoder's feature space: lower is better"``."""
    title = name if info is None else info.label
    if info is not None and info.features and feature_space:
        title += f"\nin {FEATURE_SPACES.get(feature_space, feature_space)}"
    if info is not None and info.better:
        title += f": {info.better} is better"
    return title


def metric_figure(rows: Sequence[Mapping[str, float]], name: str, *,
                  info: MetricInfo | None = None, feature_space: str | None = None):
    """The plot of metric ``name`` over ``rows`` (the tracker's rows) as a matplotlib
    ``Figure``: against PE iteration (left) and epsilon spent (right), iteration 0 (the
    public prior alone) as its own marker and a dotted line across, titled by
    ``metric_title``."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    points = sorted((r["iteration"], r["epsilon"], r[name]) for r in rows
                    if name in r and math.isfinite(r[name]))
    prior = [p for p in points if p[0] == 0]
    evolved = [p for p in points if p[0] != 0]
    figure = Figure(figsize=(9, 3.8), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    short = name if info is None else info.label.split(" (")[0]
    for axis, column, label in zip(axes, (0, 1), (
            "PE iteration (0: the public prior alone, before any private data)",
            "epsilon spent so far")):
        if evolved:
            axis.plot([p[column] for p in evolved], [p[2] for p in evolved], marker="o",
                      color="tab:blue", label=f"PE synthetic data ({len(evolved)} "
                                              f"measurement{'s' if len(evolved) > 1 else ''})")
        if prior:
            axis.axhline(prior[-1][2], color="tab:gray", linestyle=":", linewidth=1)
            axis.plot([prior[-1][column]], [prior[-1][2]], marker="*", markersize=12,
                      linestyle="none", color="tab:gray",
                      label="iteration 0: public prior alone (epsilon 0), "
                            "dotted across")
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
        if column == 0:
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel(short if info is None or not info.better
                       else f"{short} ({info.better} is better)")
    if points:
        axes[0].legend(loc="best", fontsize=8)
    figure.suptitle(metric_title(name, info, feature_space), fontsize=11)
    return figure


class Tracker:
    """Collects ``(iteration, epsilon, {metric: value})`` rows and writes them out."""

    def __init__(self, out_dir: str | pathlib.Path, *, tensorboard: bool = False,
                 feature_space: str | None = None,
                 metric_info: Mapping[str, MetricInfo] | None = None):
        """``feature_space``: the embedding name the feature metrics (FID, precision,
        recall) are measured in, for the plot titles; ``metric_info`` adds to or overrides
        ``KNOWN_METRICS``."""
        self.out_dir = pathlib.Path(out_dir)
        self.feature_space = feature_space
        self.metric_info = {**KNOWN_METRICS, **(metric_info or {})}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, float]] = _read_rows(self.out_dir / CSV_FILE)
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
        """Adds one row, rewrites the CSV and the plots, and writes TensorBoard scalars.

        Iteration 0 is the initial population (the public prior alone, epsilon 0)."""
        require(all(isinstance(v, (int, float)) for v in values.values()), "values",
                "a mapping of metric names to numbers", dict(values))
        # A resumed run re-runs the iteration it was interrupted in: its row replaces the
        # earlier one (the rows of a resumed run's folder are read back at the start).
        self.rows = [row for row in self.rows if row["iteration"] != iteration]
        self.rows.append({"iteration": iteration, "epsilon": float(epsilon),
                          **{k: float(v) for k, v in values.items()}})
        self.rows.sort(key=lambda row: row["iteration"])
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

    def figure(self, name: str):
        """The plot of metric ``name`` as a matplotlib ``Figure`` (``metric_figure``)."""
        return metric_figure(self.rows, name, info=self.metric_info.get(name),
                             feature_space=self.feature_space)

    def _write_plots(self) -> None:
        (self.out_dir / PLOT_DIR).mkdir(exist_ok=True)
        for name in self.metric_names:
            self.figure(name).savefig(self.out_dir / PLOT_DIR / f"{name}.png", dpi=90)


def _read_rows(path: pathlib.Path) -> list[dict[str, float]]:
    """The rows of an existing ``metrics.csv`` (a resumed run's), or none."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [{key: (int(value) if key == "iteration" else float(value))
                 for key, value in row.items() if value != ""}
                for row in csv.DictReader(handle)]
