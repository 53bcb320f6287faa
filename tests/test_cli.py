"""The ``pe-jax run`` command end to end on the embedded default, at a small size."""

import json

import numpy as np
import pytest
from PIL import Image

from pe_jax import cli, reporting

SMALL = ["--set", "iterations=2", "--set", "samples_per_class=10", "--set", "metrics=", "--quiet"]


def test_run_writes_samples_grid_and_privacy_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", "--out", str(out), *SMALL]) == 0
    report = json.loads((out / "privacy.json").read_text())
    assert report["iterations"] == 2 and report["delta"] == 1e-5
    assert 0 < report["epsilon"] <= report["target_epsilon"] == 4.0
    assert report["mechanism"] == ["discrete_gaussian"]
    assert report["randomness"] == ["os.urandom (CSPRNG)"]
    assert report["public"]["samples_per_class"] == [10] * 10
    assert report["public"]["generator"]["fonts"]
    assert report["jax"]["backend"] == "cpu"
    assert report["sensitivity"].startswith("L2 1 per iteration")
    assert len(report["epsilon_per_iteration"]) == 2
    assert report["epsilon_per_iteration"][-1] == pytest.approx(report["epsilon"])
    samples = np.load(out / "samples.npz")
    assert samples["images"].shape == (100, 8, 8, 1)
    np.testing.assert_array_equal(np.bincount(samples["labels"]), [10] * 10)
    grid = Image.open(out / "samples.png")
    assert grid.size == (16 * 34 - 2, 10 * 34 - 2)
    assert sorted(p.name for p in (out / "iterations").iterdir()) == [
        "iter_001.png", "iter_002.png"]
    assert "sigma" in (out / "privacy.txt").read_text()
    assert "-DP" in capsys.readouterr().out


def test_run_refuses_a_non_empty_output_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("earlier result")
    assert cli.main(["run", "--out", str(tmp_path), *SMALL]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "earlier result"


@pytest.mark.parametrize("override, message", [
    ("colour=1", "--set"), ("epsilon", "--set"), ("epsilon=-1", "epsilon"),
    ("data=mnist", "data"), ("heldout=0", "heldout"), ("heldout=1.5", "heldout"),
    ("metrics=fid,speed", "metrics")])
def test_run_rejects_bad_settings(tmp_path, capsys, override, message):
    assert cli.main(["run", "--out", str(tmp_path / "x"), "--set", override, "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_image_grid_puts_one_class_per_row():
    images = np.stack([np.full((2, 2, 1), v, np.float32) for v in (0.0, 1.0, 0.0, 1.0)])
    labels = np.array([0, 1, 0, 1])
    grid = reporting.image_grid(images, labels, num_classes=2, columns=2)
    assert grid.shape == (2 * 32 + 2, 2 * 32 + 2)
    assert (grid[:32, :32] == 0).all() and (grid[34:, :32] == 255).all()
    assert (grid[32:34] == round(0.35 * 255)).all()


def test_privacy_report_states_the_sensitivity_of_its_adjacency():
    from pe_jax import privacy

    for adjacency, sensitivity in (("add_remove", "L2 1 "), ("replace_one", "L2 sqrt(2) ")):
        ledger = privacy.PrivacyLedger(1e-5, adjacency=adjacency)
        ledger.record(privacy.ReleaseEvent("discrete_gaussian", 3.0))
        report = reporting.privacy_report(ledger, target_epsilon=None, public={})
        assert report["sensitivity"].startswith(sensitivity)


def test_run_measures_metrics_on_held_out_digits_only(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--out", str(out), "--set", "iterations=2", "--set", "samples_per_class=10",
            "--set", "metrics=fid,precision_recall", "--set", "heldout=0.25", "--quiet"]
    assert cli.main(argv) == 0
    lines = (out / "metrics" / "metrics.csv").read_text().splitlines()
    assert lines[0] == "iteration,epsilon,fid,precision,recall"
    assert [line.split(",")[0] for line in lines[1:]] == ["2"]
    assert (out / "metrics" / "plots" / "fid.png").is_file()


def test_held_out_split_is_disjoint_and_fixed():
    from pe_jax.data import load_sklearn_digits

    digits = load_sklearn_digits()
    private, reference = digits.split(0.25, seed=0)
    assert len(reference.labels) == round(0.25 * len(digits.labels))
    rows = lambda part: sorted(image.tobytes() + bytes([label])  # noqa: E731
                               for image, label in zip(part.images, part.labels))
    assert sorted(rows(private) + rows(reference)) == rows(digits)  # a partition of the rows
    again, _ = digits.split(0.25, seed=0)
    np.testing.assert_array_equal(again.images, private.images)
