"""Pictures a new user can read: metric plots, the audit plot and the sample grids.

The plots are checked through their matplotlib objects (titles, labels, legends, plotted
data, where each text lands once drawn), not through pixels.
"""

import csv
import json

import jax
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from PIL import Image

from pe_jax import audit, evolve, reporting, step, tracking
from pe_jax.apis.glyphs import GlyphGenerator
from pe_jax.metrics import callbacks

def _texts_outside(figure) -> list[str]:
    """What of ``figure`` reaches past its edges once drawn (clipped in the PNG): the texts
    that do, or the figure's tight box when only something else (a tick label) does."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = figure.bbox

    def outside(extent, slack=0.5) -> bool:
        return (extent.x0 < box.x0 - slack or extent.x1 > box.x1 + slack
                or extent.y0 < box.y0 - slack or extent.y1 > box.y1 + slack)

    # Tick labels are drawn only for ticks in view, so the figure's tight box (everything
    # drawn) decides; the texts named are for the message.
    if not outside(figure.get_tightbbox(renderer).transformed(figure.dpi_scale_trans)):
        return []
    named = [t.get_text() for t in figure.findobj(Text)
             if t.get_visible() and t.get_text().strip() and t.axes is None
             and outside(t.get_window_extent(renderer))]
    return named or [str(figure.get_tightbbox(renderer))]


def _legend_texts(axis) -> list[str]:
    legend = axis.get_legend()
    assert legend is not None, "the plot has no legend"
    return [t.get_text() for t in legend.get_texts()]


# --- metric plots ------------------------------------------------------------------------------


def test_metric_plot_names_space_and_direction_and_shows_iteration_zero(tmp_path):
    tracker = tracking.Tracker(tmp_path, feature_space="encoder")
    tracker.log(0, 0.0, {"fid": 40.0, "recall": 0.3})
    tracker.log(1, 0.7, {"fid": 35.0, "recall": 0.25})
    tracker.log(2, 1.1, {"fid": 30.0, "recall": 0.2})
    figure = tracker.figure("fid")
    title = figure.get_suptitle()
    assert "FID" in title and "glyph encoder" in title and "lower is better" in title
    assert "higher is better" in tracker.figure("recall").get_suptitle()
    left, right = figure.axes
    assert "iteration" in left.get_xlabel() and "epsilon" in right.get_xlabel()
    assert "FID" in left.get_ylabel() and "lower is better" in left.get_ylabel()
    labels = _legend_texts(left)
    assert any("iteration 0" in label and "prior" in label for label in labels)
    assert any("PE" in label for label in labels)
    # Iteration 0 is plotted, at epsilon 0 on the right, apart from the PE curve.
    plotted = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
               for line in left.get_lines() if not line.get_label().startswith("_")}
    (prior,) = [v for k, v in plotted.items() if "iteration 0" in k]
    (evolved,) = [v for k, v in plotted.items() if "PE" in k]
    assert prior == ([0], [40.0]) and evolved == ([1, 2], [35.0, 30.0])
    (prior_eps,) = [line.get_xdata() for line in right.get_lines()
                    if "iteration 0" in line.get_label()]
    assert list(prior_eps) == [0.0]
    assert _texts_outside(figure) == []
    assert (tmp_path / "plots" / "fid.png").is_file()


def test_metric_plot_of_an_unknown_metric_still_has_labels_and_a_legend(tmp_path):
    tracker = tracking.Tracker(tmp_path)
    tracker.log(3, 1.0, {"my_score": 2.0})  # one measurement: a dot, labelled
    figure = tracker.figure("my_score")
    assert figure.get_suptitle() == "my_score"
    assert figure.axes[0].get_ylabel() == "my_score"
    assert _legend_texts(figure.axes[0]) == ["PE synthetic data (1 measurement)"]
    with pytest.raises(ValueError, match="better must be"):
        tracking.MetricInfo("x", better="smaller")


def _mean_ink(images, labels):
    return {"ink": float(np.mean(images))}


def test_metrics_callback_measures_the_initial_population_as_iteration_zero(tmp_path):
    generator = GlyphGenerator(resolution=8)
    config = evolve.PEConfig(iterations=2, noise_multiplier=5.0, samples_per_class=(4,) * 10,
                             degrees=(0.5, 0.3))
    tracker = tracking.Tracker(tmp_path)
    callback = callbacks.MetricsCallback(generator, [_mean_ink], tracker, num_classes=10)
    initial = step.initial_state(jax.random.key(0), generator, config.layout, conditional=True)
    # The hook a driver runs before iteration 1; objects without measure_initial are skipped.
    callbacks.measure_initial([print, callback], initial.samples, config.layout.labels)
    with open(tmp_path / "metrics.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["iteration"] == "0" and float(row["epsilon"]) == 0.0
    images = np.asarray(generator.images(initial.samples))
    assert float(row["ink"]) == pytest.approx(float(images.mean()))
    assert (tmp_path / "grids" / "iter_000.png").is_file()
    assert any("iteration 0" in label for label in _legend_texts(tracker.figure("ink").axes[0]))


def test_make_callbacks_names_the_feature_space_of_the_plots(tmp_path):
    import ml_collections

    config = ml_collections.ConfigDict({"metrics": "fid", "metrics_embedding": "pixels"})
    reference = np.random.default_rng(0).random((20, 8, 8, 1)).astype(np.float32)
    (made,) = callbacks.make_callbacks(config, tmp_path, generator=None,
                                       reference_images=reference,
                                       reference_labels=np.zeros(20, np.int32), num_classes=1)
    made.tracker.log(0, 0.0, {"fid": 1.0})
    assert "in pixel space: lower is better" in made.tracker.figure("fid").get_suptitle()


# --- sample grids ------------------------------------------------------------------------------


def test_sample_grid_caption_says_how_many_of_how_many_per_class(tmp_path):
    images = np.random.default_rng(0).random((300, 8, 8, 1))
    labels = np.repeat(np.arange(3), 100)
    path = tmp_path / "samples.png"
    reporting.save_image_grid(path, images, labels, 3)
    picture = Image.open(path)
    assert "16 of 100 per class" in picture.text["Description"]
    grid = reporting.image_grid(images, labels, 3)
    assert picture.size == (grid.shape[1], grid.shape[0] + reporting.CAPTION_PIXELS)
    strip = np.asarray(picture)[:reporting.CAPTION_PIXELS]
    assert (strip < 128).any()  # the caption is drawn, not only stored
    assert "all 2 of 2 per class" in reporting.grid_caption(np.array([0, 0, 1, 1]), 2)
    assert "the first 1-2 of 1-3 per class" in reporting.grid_caption(
        np.array([0, 1, 1, 1]), 2, columns=2)
    reporting.save_image_grid(path, images, labels, 3, caption=False)
    assert Image.open(path).size == (grid.shape[1], grid.shape[0])


# --- the audit plot ----------------------------------------------------------------------------


def _rows():
    vote = dict(k=1, runs=16000, delta=1e-2)
    one = dict(canaries=30000, k=1, mu_guesses=300, mu_correct=200, epsilon_guesses=60,
               epsilon_correct=50, delta=1e-6)
    return [
        audit.AuditResult("vote release", audit.Control.NONE.value, mu_claimed=1.0,
                          mu_lower=0.94, epsilon_claimed=2.32, epsilon_lower=1.88, **vote),
        audit.AuditResult("vote release", audit.Control.REPLACE_ONE.value, mu_claimed=1.0,
                          mu_lower=1.33, epsilon_claimed=2.32, epsilon_lower=2.51, **vote),
        audit.OneRunResult("one run, whole pipeline", audit.Control.NONE.value,
                           mu_claimed=0.448, mu_lower=0.0, epsilon_claimed=2.0,
                           epsilon_lower=1.06, **one),
        audit.OneRunResult("one run, whole pipeline", audit.Control.REPLACE_ONE.value,
                           mu_claimed=0.448, mu_lower=0.54, epsilon_claimed=2.0,
                           epsilon_lower=1.74, **one),
    ]


def test_audit_plot_has_a_mu_epsilon_legend_a_caption_and_no_clipped_labels(tmp_path):
    figure = audit.plot(_rows(), tmp_path / "audit.png")
    assert (tmp_path / "audit.png").read_bytes()[:4] == b"\x89PNG"
    (axis,) = figure.axes
    legend = " ".join(_legend_texts(axis))
    assert "mu" in legend and "epsilon" in legend and "claimed" in legend
    texts = " ".join(t.get_text() for t in figure.findobj(Text))
    assert "MEANT to be flagged" in " ".join(texts.split())
    assert "control: replace-one" in texts and "real mechanism" in texts
    assert "not flagged (the other bound flags it)" in texts  # one-run epsilon of replace-one
    assert _texts_outside(figure) == []


def test_audit_command_shows_progress_and_records_its_time(tmp_path, capsys):
    from pe_jax import cli

    out = tmp_path / "audit"
    small = ["--set", "vote_runs=64", "--set", "one_run_canaries=200",
             "--set", "one_run_iterations=1", "--set", "vote_iterations=1"]
    status = cli.main(["audit", "--out", str(out), *small])
    assert status in (0, 1)  # a tiny audit may lack the power to flag a control
    captured = capsys.readouterr()
    assert "audit" in captured.err and "11/11" in captured.err
    assert "audits took" in captured.out
    assert json.loads((out / "audit.json").read_text())["seconds"] > 0
    assert cli.main(["audit", "--out", str(tmp_path / "quiet"), "--quiet", *small]) in (0, 1)
    assert "11/11" not in capsys.readouterr().err
