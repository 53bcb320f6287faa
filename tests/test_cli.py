"""The ``pe-jax run`` command end to end on the embedded default, at a small size."""

import json

import numpy as np
import pytest
from PIL import Image

from pe_jax import cli, reporting

SMALL = ["--set", "pe.iterations=2", "--set", "pe.samples_per_class=10", "--set", "metrics.names=",
         "--quiet"]


def _words(path):
    """A text file's words, single-spaced (privacy.txt wraps its lines)."""
    return " ".join(path.read_text().split())


def test_run_writes_samples_grid_and_privacy_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", "--out", str(out), *SMALL]) == 0
    report = json.loads((out / "privacy.json").read_text())
    assert report["iterations"] == 2 and report["delta"] == 1e-5
    assert 0 < report["epsilon"] <= report["target_epsilon"] == 4.0
    assert report["mechanism"] == ["discrete_gaussian"]
    assert report["randomness"] == ["os.urandom (CSPRNG)"]
    assert report["public"]["samples_per_class"]["values"] == [10] * 10
    assert report["public"]["generator"]["training_data"]["fonts"]
    assert report["jax"]["backend"] == "cpu"
    assert report["sensitivity"].startswith("L2 1 per iteration")
    cumulative = report["epsilon_cumulative"]  # epsilon spent after each iteration
    assert len(cumulative) == 2 and cumulative[0] < cumulative[1] == report["epsilon"]
    assert sum(report["epsilon_increment_per_iteration"]) == pytest.approx(report["epsilon"])
    assert report["differentially_private"] is True and report["not_private_because"] == []
    assert report["private_data"]["rows"] > 1000 and report["private_data"]["description"]
    assert report["composed"] == {
        "ledger_file": None, "releases_before_this_run": 0, "releases": 2,
        "mechanisms": {"discrete_gaussian": 2}, "differentially_private": True,
        "epsilon": report["epsilon"], "epsilon_budget": 4.0}
    samples = np.load(out / "samples.npz")
    assert samples["images"].shape == (100, 8, 8, 1)
    np.testing.assert_array_equal(np.bincount(samples["labels"]), [10] * 10)
    grid = Image.open(out / "samples.png")
    assert grid.size == (16 * 34 - 2, 10 * 34 - 2 + reporting.CAPTION_PIXELS)
    assert sorted(p.name for p in (out / "iterations").iterdir()) == [
        "iter_001.png", "iter_002.png"]
    text = _words(out / "privacy.txt")
    for words in (f"This run is ({report['epsilon']:.4g}, 1e-05)-differentially private",
                  "one protected row is added or removed", "Protected rows",
                  f"({report['private_data']['rows']:,} rows)", "sigma = ",
                  "This run started a fresh ledger", "Treated as public", "- generator: ",
                  "Not covered by the guarantee, beside this file - nothing"):
        assert words in text, words
    assert "-DP" in capsys.readouterr().out


def test_run_refuses_a_non_empty_output_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("earlier result")
    assert cli.main(["run", "--out", str(tmp_path), *SMALL]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "earlier result"


@pytest.mark.parametrize("override, message", [
    ("colour=1", "--set"), ("privacy.epsilon", "--set"), ("privacy.epsilon=-1", "epsilon"),
    ("data.source=mnist", "data.source"), ("data.heldout=0", "data.heldout"),
    ("data.heldout=1.5", "data.heldout"), ("metrics.names=fid,speed", "metrics.names"),
    ("epsilon=1", "use privacy.epsilon (--set privacy.epsilon=1)")])
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


def test_privacy_report_states_the_sensitivity_of_its_adjacency(tmp_path):
    from pe_jax import privacy

    for adjacency, sensitivity in (("add_remove", "L2 1 "), ("replace_one", "L2 sqrt(2) ")):
        ledger = privacy.PrivacyLedger(1e-5, adjacency=adjacency)
        ledger.record(privacy.ReleaseEvent("discrete_gaussian", 3.0))
        report = reporting.privacy_report(
            ledger, target_epsilon=None, private_data={"description": "rows", "rows": 3},
            public={"generator": {"description": "a public model", "seed": 1}})
        assert report["sensitivity"].startswith(sensitivity)
        assert report["neighbouring_data_sets"] == reporting.NEIGHBOURS[adjacency]
        reporting.write_privacy_report(tmp_path, report)
        text = _words(tmp_path / "privacy.txt")
        assert "added or removed" in text if adjacency == "add_remove" else "replaced by" in text
        (tmp_path / "privacy.txt").unlink()
        (tmp_path / "privacy.json").unlink()


@pytest.mark.parametrize("kwargs, match", [
    (dict(private_data={"rows": 3}), "private_data\\['description'\\]"),
    (dict(private_data={"description": "rows"}), "private_data\\['rows'\\]"),
    (dict(public={"generator": "a model"}), "public\\['generator'\\] must be a dict"),
    (dict(public={"generator": {"seed": 1}}), "description"),
    (dict(non_private_outputs={"metrics/": ""}), "non_private_outputs"),
    (dict(run_start=2), "run_start")])
def test_privacy_report_requires_described_inputs(kwargs, match):
    from pe_jax import privacy

    ledger = privacy.PrivacyLedger(1e-5)
    ledger.record(privacy.ReleaseEvent("discrete_gaussian", 3.0))
    args = dict(target_epsilon=None, private_data={"description": "rows", "rows": 3},
                public={}) | kwargs
    with pytest.raises(ValueError, match=match):
        reporting.privacy_report(ledger, **args)


def test_run_measures_metrics_on_held_out_digits_only(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--out", str(out), "--set", "pe.iterations=2",
            "--set", "pe.samples_per_class=10", "--set", "metrics.names=fid,precision_recall",
            "--set", "data.heldout=0.25", "--quiet"]
    assert cli.main(argv) == 0
    lines = (out / "metrics" / "metrics.csv").read_text().splitlines()
    assert lines[0] == "iteration,epsilon,fid,precision,recall"
    # Iteration 0 is the initial population: the public prior alone, epsilon 0.
    assert [line.split(",")[:2] for line in lines[1:]][0] == ["0", "0.0"]
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "2"]
    assert (out / "metrics" / "plots" / "fid.png").is_file()
    assert (out / "metrics" / "grids" / "iter_000.png").is_file()
    report = json.loads((out / "privacy.json").read_text())
    assert "held-out" in report["non_private_outputs"]["metrics/"]
    assert "- metrics/: quality metrics" in _words(out / "privacy.txt")


def test_run_ledger_file_composes_repeated_runs_and_refuses_over_budget(tmp_path, capsys,
                                                                        monkeypatch):
    from pe_jax import privacy
    from pe_jax.data import digits

    ledger = tmp_path / "ledgers" / "digits.json"
    ledger.parent.mkdir()
    argv = lambda name, *extra: ["run", "--out", str(tmp_path / name), *SMALL,  # noqa: E731
                                 "--ledger", str(ledger), *extra]
    assert cli.main(argv("first", "--ledger-budget", "7")) == 0
    first = json.loads((tmp_path / "first" / "privacy.json").read_text())
    assert len(json.loads(ledger.read_text())["events"]) == 2
    assert cli.main(argv("second")) == 0  # a rerun on the same data: composed, not fresh
    second = json.loads((tmp_path / "second" / "privacy.json").read_text())
    assert second["epsilon"] == pytest.approx(first["epsilon"])  # the run's own epsilon
    composed = second["composed"]
    assert composed["ledger_file"] == str(ledger) and composed["epsilon_budget"] == 7.0
    assert composed["releases_before_this_run"] == 2 and composed["releases"] == 4
    stored = privacy.PrivacyLedger.open(ledger, delta=1e-5)
    assert len(stored) == 4 and composed["epsilon"] == stored.epsilon_spent()
    assert first["epsilon"] < composed["epsilon"] <= 7.0
    assert "after 2 earlier releases: all 4 releases together are epsilon" in _words(
        tmp_path / "second" / "privacy.txt")
    assert "4 releases in all" in capsys.readouterr().out
    saved = ledger.read_text()

    def untouchable(*args, **kwargs):
        raise AssertionError("private data read before the ledger check")

    monkeypatch.setattr(digits, "load_sklearn_digits", untouchable)
    for extra, message in [
            ((), "2 releases refused: epsilon spent 5.9"),  # a third run: ~7.6 > 7
            (("--set", "privacy.delta=1e-6"), "has delta=1e-05, but this run uses delta=1e-06"),
            (("--ledger-budget", "9"), "epsilon_budget=7.0")]:
        assert cli.main(argv("refused", *extra)) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "refused").exists()
    assert ledger.read_text() == saved  # refused runs spend nothing
    assert sorted(p.name for p in ledger.parent.iterdir()) == ["digits.json"]  # no temp files


def test_ledger_budget_needs_a_ledger(tmp_path, capsys):
    assert cli.main(["run", "--out", str(tmp_path / "x"), *SMALL, "--ledger-budget", "3"]) == 2
    assert "--ledger-budget" in capsys.readouterr().err


def test_run_non_private_baseline_releases_clean_counts_and_says_so(tmp_path, capsys):
    out = tmp_path / "baseline"
    assert cli.main(["run", "--out", str(out), *SMALL, "--set", "privacy.non_private=true"]) == 0
    report = json.loads((out / "privacy.json").read_text())
    assert report["differentially_private"] is False and report["epsilon"] is None
    assert report["noise_multiplier"] == [0.0] and report["target_epsilon"] is None
    assert any("without noise" in reason for reason in report["not_private_because"])
    assert "This run is NOT differentially private" in _words(out / "privacy.txt")
    assert "NOT differentially private" in capsys.readouterr().out
    ledger = json.loads((out / "ledger.json").read_text())
    assert ledger["epsilon_budget"] is None and len(ledger["events"]) == 2
    # A shared ledger never takes clean releases.
    shared = tmp_path / "ledger.json"
    assert cli.main(["run", "--out", str(tmp_path / "x"), *SMALL,
                     "--set", "privacy.non_private=true", "--ledger", str(shared)]) == 2
    assert "shared --ledger" in capsys.readouterr().err
    assert not shared.exists() and not (tmp_path / "x").exists()
