"""Tracker files and metric callbacks inside the PE loop."""

import csv

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from pe_jax import embeddings, evolve, privacy, tracking
from pe_jax.apis.glyphs import GlyphGenerator
from pe_jax.data import load_sklearn_digits
from pe_jax.metrics import callbacks, downstream


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_tracker_writes_csv_plots_and_grids(tmp_path):
    tracker = tracking.Tracker(tmp_path)
    tracker.log(1, 0.5, {"fid": 3.0})
    tracker.log(2, 0.9, {"fid": 2.0, "recall": 0.4})
    rows = _rows(tmp_path / "metrics.csv")
    assert [r["iteration"] for r in rows] == ["1", "2"]
    assert rows[0]["recall"] == "" and float(rows[1]["recall"]) == 0.4
    assert float(rows[1]["epsilon"]) == 0.9
    for name in ("fid", "recall"):
        assert Image.open(tmp_path / "plots" / f"{name}.png").size[0] > 100
    images = np.random.default_rng(0).random((6, 8, 8, 1))
    path = tracker.save_grid(2, images, np.array([0, 0, 1, 1, 2, 2]), 3)
    assert Image.open(path).size[1] > Image.open(path).size[0] / 16 * 2  # one row per class
    with pytest.raises(ValueError, match="values must be"):
        tracker.log(3, 1.0, {"fid": "low"})


def test_tensorboard_event_files(tmp_path):
    tracker = tracking.Tracker(tmp_path, tensorboard=True)
    tracker.log(1, 0.5, {"fid": 3.0})
    tracker.save_grid(1, np.zeros((2, 8, 8, 1)), np.array([0, 1]), 2)
    tracker.close()
    (events,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
    assert b"fid" in events.read_bytes()  # the logged scalar's tag is in the event file


def _run_pe(digits, generator, callback_list, iterations=3):
    config = evolve.PEConfig(iterations=iterations, noise_multiplier=5.0,
                             samples_per_class=(10,) * 10,
                             degrees=evolve.degree_schedule(0.5, 0.2, iterations))
    evolve.run(jax.random.key(0), config, generator=generator,
               embedder=embeddings.make_embedder("pixels"), private_images=digits.images[:300],
               private_labels=digits.labels[:300], ledger=privacy.PrivacyLedger(1e-5),
               callbacks=callback_list, noise_rng=np.random.default_rng(0), progress=False)


def test_metric_callbacks_run_every_n_iterations_in_the_pe_loop(tmp_path):
    digits = load_sklearn_digits()
    reference = slice(1000, 1400)  # real digits that are not the private rows below
    generator = GlyphGenerator(resolution=8)
    config = ml_collections.ConfigDict({"metrics": "fid,precision_recall",
                                        "metrics_every": 2, "metrics_embedding": "encoder",
                                        "iterations": 3})
    made = callbacks.make_callbacks(config, tmp_path, generator=generator,
                                    reference_images=digits.images[reference],
                                    reference_labels=digits.labels[reference], num_classes=10)
    tracker = tracking.Tracker(tmp_path / "accuracy")
    accuracy = callbacks.MetricsCallback(
        generator, [callbacks.accuracy_metric(digits.images[reference],
                                              digits.labels[reference], 10,
                                              downstream.Recipe(steps=50))],
        tracker, num_classes=10, every=3)
    _run_pe(digits, generator, made + [accuracy])
    rows = _rows(tmp_path / "metrics" / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == [2, 3]  # every 2nd, and the last
    for row in rows:
        assert float(row["fid"]) > 0 and 0 <= float(row["precision"]) <= 1
        assert 0 <= float(row["recall"]) <= 1 and float(row["epsilon"]) > 0
    assert float(rows[1]["epsilon"]) > float(rows[0]["epsilon"])
    for name in ("fid", "precision", "recall"):
        assert (tmp_path / "metrics" / "plots" / f"{name}.png").is_file()
    assert sorted(p.name for p in (tmp_path / "metrics" / "grids").iterdir()) == [
        "iter_002.png", "iter_003.png"]
    (row,) = _rows(tmp_path / "accuracy" / "metrics.csv")
    assert row["iteration"] == "3" and 0 <= float(row["accuracy"]) <= 1


def test_make_callbacks_refuses_unknown_metrics(tmp_path):
    config = ml_collections.ConfigDict({"metrics": "fid,inception_score"})
    with pytest.raises(ValueError, match="metrics must be"):
        callbacks.make_callbacks(config, tmp_path, generator=None, reference_images=None,
                                 reference_labels=None, num_classes=10)
    assert callbacks.make_callbacks(ml_collections.ConfigDict({"metrics": ""}), tmp_path,
                                    generator=None, reference_images=None,
                                    reference_labels=None, num_classes=10) == []
