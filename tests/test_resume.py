"""Exact resume: an interrupted run continued from its checkpoint ends bitwise where an
uninterrupted one does, never draws a recorded release twice, and refuses changed inputs."""

import json
import signal
import stat

import jax
import numpy as np
import pytest

from pe_jax import cli, embeddings, evolve, privacy, reporting, resume
from pe_jax.apis.glyphs import GlyphGenerator
from pe_jax.data import load_sklearn_digits

T = 4
CLASSES = 3


class Interrupt(Exception):
    """Stands for a crash or a kill at a chosen point of the run."""


@pytest.fixture(scope="module")
def setup():
    private, _ = load_sklearn_digits().split(0.25)
    keep = private.labels < CLASSES
    config = evolve.PEConfig(iterations=T, noise_multiplier=2.0, samples_per_class=(8,) * CLASSES,
                             degrees=(0.6, 0.4, 0.3, 0.2), threshold=0.5)
    generator = GlyphGenerator(characters="012", resolution=8)
    return config, generator, private.images[keep], private.labels[keep]


def _run(setup, ledger, *, checkpoint=None, callbacks=()):
    config, generator, images, labels = setup
    return evolve.run(jax.random.key(3), config, generator=generator,
                      embedder=embeddings.PixelEmbedder(), private_images=images,
                      private_labels=labels, ledger=ledger, callbacks=callbacks,
                      noise_rng=np.random.default_rng(11), progress=False,
                      checkpoint=checkpoint)


def _ledger(path):
    return privacy.PrivacyLedger.open(path, delta=1e-5)


def _released(store):
    """A callback that keeps each iteration's released noisy counts."""
    return lambda result: store.__setitem__(result.iteration, result.release.noisy)


def _fingerprint(**changes):
    fingerprint = resume.build_fingerprint({"epsilon": 4.0, "iterations": T}, "a" * 64, "b" * 64)
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            fingerprint[section] = {**fingerprint[section], name: value}
        else:
            fingerprint[section] = value
    return fingerprint


@pytest.fixture(scope="module")
def uninterrupted(setup, tmp_path_factory):
    path = tmp_path_factory.mktemp("reference") / "ledger.json"
    releases = {}
    result = _run(setup, _ledger(path), callbacks=[_released(releases)])
    return result, releases, json.loads(path.read_text())


def _interrupted_then_resumed(setup, tmp_path, interrupt_at, monkeypatch=None, lose_noise_of=None):
    """Runs until ``interrupt_at`` (a callback raises after that iteration's step), or until
    the noise file of iteration ``lose_noise_of`` is about to be written; then resumes."""
    path, out = tmp_path / "ledger.json", tmp_path / "out"
    out.mkdir()
    checkpoint = resume.RunCheckpoint.create(out, _fingerprint(), run={})

    def stop(result):
        if result.iteration == interrupt_at:
            raise Interrupt

    if lose_noise_of is not None:
        real = resume.RunCheckpoint.noise_drawn

        def crash(self, iteration, noise, noise_rng):
            if iteration == lose_noise_of:
                raise Interrupt  # after the ledger recorded the release, before the file
            real(self, iteration, noise, noise_rng)

        monkeypatch.setattr(resume.RunCheckpoint, "noise_drawn", crash)
    with pytest.raises(Interrupt):
        _run(setup, _ledger(path), checkpoint=checkpoint, callbacks=[stop])
    if monkeypatch is not None:
        monkeypatch.undo()
    interrupted = json.loads(path.read_text())["events"]
    releases = {}
    result = _run(setup, _ledger(path), checkpoint=resume.RunCheckpoint.open(out, _fingerprint()),
                  callbacks=[_released(releases)])
    return result, releases, json.loads(path.read_text()), interrupted, out


@pytest.mark.parametrize("interrupt_at", [1, 2, T])
def test_resume_equals_the_uninterrupted_run(setup, uninterrupted, tmp_path, interrupt_at):
    reference, reference_releases, reference_ledger = uninterrupted
    result, releases, ledger, interrupted, out = _interrupted_then_resumed(
        setup, tmp_path, interrupt_at)
    # Interrupted after step t's callbacks, before its state was saved: step t re-runs.
    # The noise of t and (drawn while step t ran) t + 1 was recorded before the interruption.
    assert len(interrupted) == min(interrupt_at + 1, T)
    assert sorted(releases) == list(range(interrupt_at, T + 1))
    for t, counts in releases.items():
        np.testing.assert_array_equal(counts, reference_releases[t])  # the recorded noise
    for got, want in zip(jax.tree.leaves(result.samples), jax.tree.leaves(reference.samples)):
        np.testing.assert_array_equal(got, want)
    assert ledger == reference_ledger  # bitwise: T releases, none drawn twice
    assert not list((out / resume.FOLDER).glob("noise-*"))  # used noise is not kept


def test_crash_after_recording_reuses_the_recorded_noise(setup, uninterrupted, tmp_path):
    _, reference_releases, _ = uninterrupted
    path, out = tmp_path / "ledger.json", tmp_path / "out"
    out.mkdir()
    checkpoint = resume.RunCheckpoint.create(out, _fingerprint(), run={})

    def stop(result):
        if result.iteration == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        _run(setup, _ledger(path), checkpoint=checkpoint, callbacks=[stop])
    folder = out / resume.FOLDER
    assert sorted(p.name for p in folder.glob("noise-*")) == ["noise-000002.npz",
                                                              "noise-000003.npz"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # noise + release = exact counts
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.glob("noise-*"))
    opened = resume.RunCheckpoint.open(out, _fingerprint())
    assert opened.iteration == 1 and opened.pending_draws(after=1) == 2
    draws = []
    real = privacy.draw_noise

    def counted(*args, **kwargs):
        draws.append(1)
        return real(*args, **kwargs)

    import pe_jax.evolve
    original, pe_jax.evolve.privacy.draw_noise = pe_jax.evolve.privacy.draw_noise, counted
    try:
        releases = {}
        _run(setup, _ledger(path), checkpoint=opened, callbacks=[_released(releases)])
    finally:
        pe_jax.evolve.privacy.draw_noise = original
    assert len(draws) == T - 3  # iterations 2 and 3 used their recorded noise
    np.testing.assert_array_equal(releases[2], reference_releases[2])
    assert len(json.loads(path.read_text())["events"]) == T


def test_a_release_recorded_without_its_noise_file_is_counted_not_reused(
        setup, uninterrupted, tmp_path, monkeypatch):
    reference, _, reference_ledger = uninterrupted
    result, _, ledger, interrupted, _ = _interrupted_then_resumed(
        setup, tmp_path, interrupt_at=None, monkeypatch=monkeypatch, lose_noise_of=3)
    assert len(interrupted) == 3  # the third release was recorded, its noise never used
    # The resumed run draws iteration 3 again: the ledger over-counts by one (the safe side).
    assert len(ledger["events"]) == T + 1
    assert ledger["events"][:T] == reference_ledger["events"]
    for got, want in zip(jax.tree.leaves(result.samples), jax.tree.leaves(reference.samples)):
        np.testing.assert_array_equal(got, want)  # seeded: the same noise was drawn again


@pytest.mark.parametrize("changes, message", [
    ({"config": {"epsilon": 2.0, "iterations": T}}, "config epsilon: 4.0 -> 2.0"),
    ({"config": {"epsilon": 4.0, "iterations": T + 1}}, f"config iterations: {T} -> {T + 1}"),
    ({"private_data": "c" * 64}, "the private data (sha256 aaaaaaaaaaaa -> cccccccccccc)"),
    ({"public_models": "d" * 64}, "the public models (generator, embedding)"),
    ({"build__jax": "0.0.1"}, f"build jax: '{jax.__version__}' -> '0.0.1'"),
    ({"build__backend": "gpu"}, "build backend: 'cpu' -> 'gpu'"),
])
def test_resume_with_changed_inputs_is_refused(tmp_path, changes, message):
    resume.RunCheckpoint.create(tmp_path, _fingerprint(), run={})
    with pytest.raises(ValueError, match="--resume refused") as error:
        resume.RunCheckpoint.open(tmp_path, _fingerprint(**changes))
    assert message in str(error.value) and "Nothing was released" in str(error.value)
    resume.RunCheckpoint.open(tmp_path, _fingerprint())  # unchanged: accepted


def test_resume_needs_an_interrupted_run(tmp_path):
    with pytest.raises(ValueError, match="holds no interrupted run"):
        resume.RunCheckpoint.open(tmp_path, _fingerprint())
    resume.RunCheckpoint.create(tmp_path, _fingerprint(), run={})
    with pytest.raises(ValueError, match="already exists"):
        resume.RunCheckpoint.create(tmp_path, _fingerprint(), run={})


def test_fingerprint_hashes_see_every_byte(tmp_path):
    a = np.zeros((2, 3), np.float32)
    b = a.copy()
    b[1, 2] = np.float32(1e-30)
    assert resume.sha256_arrays(a) != resume.sha256_arrays(b)
    assert resume.sha256_arrays(a) != resume.sha256_arrays(a.reshape(3, 2))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"\0" * 8)
    before = resume.sha256_files([tmp_path / "model"])
    (tmp_path / "model" / "w.bin").write_bytes(b"\0" * 7 + b"\1")
    assert resume.sha256_files([tmp_path / "model"]) != before


SMALL = ["--set", "pe.iterations=3", "--set", "pe.samples_per_class=6", "--set", "metrics.names=",
         "--set", "privacy.noise_seed=5", "--quiet"]


def _interrupt_after_picture(monkeypatch, iteration: int, interrupt) -> None:
    """Calls ``interrupt()`` right after the CLI saves iteration ``iteration``'s picture."""
    real = reporting.save_image_grid

    def interrupted(path, *args, **kwargs):
        real(path, *args, **kwargs)
        if path.name == f"iter_{iteration:03d}.png":
            interrupt()

    monkeypatch.setattr(reporting, "save_image_grid", interrupted)


def _keyboard_interrupt():
    raise KeyboardInterrupt


def test_cli_interrupted_by_sigterm_resumes_to_the_uninterrupted_result(tmp_path, capsys,
                                                                        monkeypatch):
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert cli.main(["run", "--out", str(reference), *SMALL]) == 0
    capsys.readouterr()
    _interrupt_after_picture(monkeypatch, 2, lambda: signal.raise_signal(signal.SIGTERM))
    assert cli.main(["run", "--out", str(out), *SMALL]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"pe-jax: interrupted; what was spent is recorded in {out}; continue with: "
                   f"pe-jax run --resume {out}")  # one line, no traceback
    monkeypatch.undo()
    # What the interruption left: the ledger and the report of the releases made so far.
    assert (out / "INCOMPLETE").is_file() and not (out / "samples.npz").exists()
    partial = json.loads((out / "privacy.json").read_text())
    assert partial["complete"] is False and partial["iterations"] == 3  # 3 drawn, 2 used
    text = " ".join((out / "privacy.txt").read_text().split())
    assert "INCOMPLETE: the run plans 3 iterations and has recorded 3 releases" in text
    assert len(json.loads((out / "ledger.json").read_text())["events"]) == 3

    ledger_before = (out / "ledger.json").read_text()
    assert cli.main(["run", "--resume", str(out), "--set", "privacy.epsilon=2.0",
                     "--quiet"]) == 2
    assert "config privacy.epsilon: 4.0 -> 2.0" in capsys.readouterr().err
    assert (out / "ledger.json").read_text() == ledger_before  # refused: nothing released

    assert cli.main(["run", "--resume", str(out), "--quiet"]) == 0
    for name in ["samples.npz"]:
        got, want = np.load(out / name), np.load(reference / name)
        for key in want.files:
            np.testing.assert_array_equal(got[key], want[key])
    assert (out / "ledger.json").read_text() == (reference / "ledger.json").read_text()
    for name in ["samples.png", "iterations/iter_003.png"]:
        assert (out / name).read_bytes() == (reference / name).read_bytes()
    report = json.loads((out / "privacy.json").read_text())
    assert report["complete"] is True and report["iterations"] == 3
    assert not (out / "INCOMPLETE").exists() and not (out / resume.FOLDER).exists()
    assert cli.main(["run", "--resume", str(out), "--quiet"]) == 2
    assert "holds no interrupted run" in capsys.readouterr().err


def test_cli_resume_continues_in_the_shared_ledger_file(tmp_path, capsys, monkeypatch):
    ledger, out = tmp_path / "ledgers" / "digits.json", tmp_path / "run"
    ledger.parent.mkdir()
    _interrupt_after_picture(monkeypatch, 1, _keyboard_interrupt)
    argv = ["run", "--out", str(out), *SMALL, "--ledger", str(ledger)]
    assert cli.main(argv) == 130
    monkeypatch.undo()
    assert len(json.loads(ledger.read_text())["events"]) == 2
    assert not (out / "ledger.json").exists()  # the shared file is the run's ledger
    other = tmp_path / "other.json"
    assert cli.main(["run", "--resume", str(out), "--ledger", str(other), "--quiet"]) == 2
    assert "leave --ledger out" in capsys.readouterr().err and not other.exists()
    assert cli.main(["run", "--resume", str(out), "--quiet"]) == 0
    report = json.loads((out / "privacy.json").read_text())
    assert report["composed"]["ledger_file"] == str(ledger.absolute())
    assert report["composed"]["releases"] == 3 and report["iterations"] == 3


def test_cli_resume_keeps_the_metrics_measured_before_the_interruption(tmp_path, monkeypatch):
    out = tmp_path / "run"
    with_metrics = [*SMALL, "--set", "metrics.names=precision_recall", "--set", "metrics.every=1"]
    _interrupt_after_picture(monkeypatch, 2, _keyboard_interrupt)
    assert cli.main(["run", "--out", str(out), *with_metrics]) == 130
    monkeypatch.undo()
    csv = out / "metrics" / "metrics.csv"
    # Iteration 0 (the prior alone) and 1 were measured; 2 was interrupted before its metrics.
    assert [line.split(",")[0] for line in csv.read_text().splitlines()[1:]] == ["0", "1"]
    assert cli.main(["run", "--resume", str(out), *with_metrics[-4:], "--quiet"]) == 0
    assert [line.split(",")[0] for line in csv.read_text().splitlines()[1:]] == [
        "0", "1", "2", "3"]
