"""DP-SGD fine-tuning (pe_jax.training.dpsgd, pe-jax dp-finetune): clipping, noise scale,
accounting in the ledger, exact resume, the privacy report, the canary audit, and a tiny
end-to-end run on the digits."""

import json
import math
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pe_jax import checkpoints, cli, privacy, resume
from pe_jax.apis.diffusion import _unet_from_metadata
from pe_jax.audit.dpsgd_audit import DPSGDControl, dpsgd_audit
from pe_jax.data import load_sklearn_digits
from pe_jax.diffusion import epsilon_loss, make_schedule
from pe_jax.models.unet import UNet, UNetConfig
from pe_jax.privacy import dpsgd_accounting
from pe_jax.resume import RunCheckpoint, build_fingerprint
from pe_jax.training import dpsgd
from pe_jax.training.diffusion import TrainSettings
from pe_jax.training.public_data import to_model_range

from tiny_denoisers import LinearDenoiser

TINY = UNetConfig(resolution=8, channels=1, base_width=8, width_multipliers=(1,),
                  blocks_per_level=1, attention_resolutions=(), num_classes=10, norm_groups=4)
SCHEDULE = {"kind": "cosine", "num_steps": 100}


def _linear_loss(w, batch, key):
    """A row's gradient is the row itself."""
    return jnp.sum(batch[0] @ w)


def test_clipping_bound_is_honoured_per_example():
    rng = np.random.default_rng(0)
    small = rng.normal(size=(3, 5)).astype(np.float32)
    small *= 0.5 / np.linalg.norm(small, axis=1, keepdims=True)  # norm 0.5 < clip 1
    exploding = np.full((1, 5), 1e6, np.float32)
    padding_row = np.full((1, 5), -1e6, np.float32)
    rows = jnp.asarray(np.concatenate([small, exploding, padding_row]))
    padding = jnp.asarray([False] * 4 + [True])
    batch = (rows, jnp.zeros(5, jnp.int32), padding)
    loss, grads = dpsgd.dp_grad(1.0)(_linear_loss, jnp.ones(5), batch, jax.random.key(0))
    # The small rows pass whole, the exploding one is scaled to norm 1, padding adds nothing.
    expected = small.sum(0) + exploding[0] / np.linalg.norm(exploding[0])
    np.testing.assert_allclose(grads, expected, rtol=1e-5)
    assert abs(float(loss) - float((small.sum() + exploding.sum()) / 4)) < 1e-3 * 5e6 / 4


def test_noise_scale_matches_the_calibration():
    rate, steps, target, delta = 0.05, 100, 2.0, 1e-5
    sigma = dpsgd_accounting.noise_multiplier(target, delta, rate, steps)
    assert dpsgd_accounting.epsilon(sigma, rate, steps, delta) <= target
    assert dpsgd_accounting.epsilon(sigma * 0.99, rate, steps, delta) > target
    settings = dpsgd.DPSGDSettings(TrainSettings(steps=steps), sampling_rate=rate,
                                   expected_batch_size=10.0, clipping_norm=0.5,
                                   noise_multiplier=sigma)
    zeros = {"a": jnp.zeros((100_000,)), "b": jnp.zeros((50, 1000))}
    privatizer = dpsgd.privatizer(settings, jnp.asarray([1, 2], jnp.uint32))
    state = privatizer.init(zeros)
    first, state = privatizer.update(zeros, state)
    second, _ = privatizer.update(zeros, state)
    flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(first)])
    want = sigma * 0.5 / 10.0  # noise multiplier x clipping norm / expected batch size
    assert abs(flat.std() / want - 1) < 0.01 and abs(flat.mean()) < 0.01 * want
    again = np.concatenate([np.ravel(x) for x in jax.tree.leaves(second)])
    assert abs(np.corrcoef(flat, again)[0, 1]) < 0.01  # the key moves on: fresh noise


def test_ledger_composes_dpsgd_segments_and_keeps_pe_files_unchanged(tmp_path):
    settings = dpsgd.DPSGDSettings(TrainSettings(steps=30), sampling_rate=0.1,
                                   expected_batch_size=5.0, clipping_norm=2.0,
                                   noise_multiplier=1.5)
    ledger = privacy.PrivacyLedger.open(tmp_path / "ledger.json", delta=1e-5)
    for steps in (10, 10, 10):
        ledger.record(settings.event(steps, "test", seeded=False))
    assert ledger.epsilon_spent() == pytest.approx(
        dpsgd_accounting.epsilon(1.5, 0.1, 30, 1e-5), rel=1e-9)
    saved = json.loads((tmp_path / "ledger.json").read_text())
    assert saved["events"][0] | {"steps": 10} == saved["events"][0]
    assert {"mechanism": "DP-SGD", "sampling_rate": 0.1, "clipping_norm": 2.0}.items() \
        <= saved["events"][0].items()
    assert privacy.PrivacyLedger.from_dict(saved).epsilon_spent() == ledger.epsilon_spent()
    pe = privacy.PrivacyLedger(1e-5)
    pe.record(privacy.ReleaseEvent("gaussian", 2.0))
    assert set(pe.to_dict()["events"][0]) == {"mechanism", "noise_multiplier", "k", "source",
                                              "seeded"}
    with pytest.raises(ValueError, match="DP-SGD events only"):
        privacy.ReleaseEvent("gaussian", 2.0, sampling_rate=0.5)
    with pytest.raises(ValueError, match="clipping_norm"):
        privacy.ReleaseEvent("DP-SGD", 2.0, sampling_rate=0.5)
    with pytest.raises(ValueError, match="add_remove"):
        privacy.PrivacyLedger(1e-5, adjacency="replace_one").record(
            settings.event(1, "test", seeded=False))


def test_audit_passes_the_real_step_and_flags_the_no_noise_control():
    real = dpsgd_audit(noise_multiplier=1.0, runs=1000)
    broken = dpsgd_audit(DPSGDControl.NO_NOISE, noise_multiplier=1.0, runs=1000)
    assert not real.mu_flagged and not real.epsilon_flagged and real.mu_lower > 0.3
    assert broken.mu_flagged and broken.mu_lower > 3 * broken.mu_claimed


def test_finetune_on_digits_lowers_the_loss_and_resumes_exactly(tmp_path):
    private, heldout = load_sklearn_digits().split(0.25)
    images, labels = to_model_range(private.images[:200]), jnp.asarray(private.labels[:200])
    settings = dpsgd.DPSGDSettings(
        TrainSettings(steps=60, learning_rate=0.02, warmup_steps=1, ema_decay=0.0,
                      checkpoint_every=30, log_every=30),
        sampling_rate=0.25, expected_batch_size=50.0, clipping_norm=1.0, noise_multiplier=0.5,
        pad_multiple=64)
    fingerprint = build_fingerprint({"test": True}, "private", "public")
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    resumed = RunCheckpoint.create(tmp_path / "b", fingerprint, {})
    ledgers = [privacy.PrivacyLedger(1e-5), privacy.PrivacyLedger(1e-5)]

    def interrupt_after_30(done, state):  # what an interruption after step 30 leaves on disk
        if done == 30:
            resumed.save(state, 30, 30, None)
            ledgers[1].record(ledgers[0].events[0])

    def run(ledger, checkpoint, recorded, callbacks):
        return dpsgd.finetune(
            LinearDenoiser(nnx.Rngs(0)), make_schedule(**SCHEDULE), images, labels, settings,
            key=jax.random.key(1), noise_key=jnp.asarray([3, 4], jnp.uint32), sampler_seed=5,
            ledger=ledger, recorded_steps=recorded, source="test", seeded=True,
            checkpoint=checkpoint, callbacks=callbacks)

    whole = run(ledgers[0], RunCheckpoint.create(tmp_path / "a", fingerprint, {}), 0,
                (interrupt_after_30,))
    second_half = run(ledgers[1], RunCheckpoint.open(tmp_path / "b", fingerprint), 30, ())
    for a, b in zip(jax.tree.leaves(whole.state), jax.tree.leaves(second_half.state)):
        np.testing.assert_array_equal(a, b)
    assert ledgers[0].to_dict() == ledgers[1].to_dict() and len(ledgers[0]) == 2
    assert [s for s, _ in second_half.losses] == [60] and whole.losses[-1] == second_half.losses[0]
    # On held-out digits (never trained on), the fine-tuned model's loss is lower.
    x, y = to_model_range(heldout.images), jnp.asarray(heldout.labels)
    loss = jax.jit(lambda m: epsilon_loss(m, make_schedule(**SCHEDULE), jax.random.key(0), x,
                                          y, label_dropout=0.0))
    before, after = float(loss(LinearDenoiser(nnx.Rngs(0)))), float(loss(whole.model))
    print(f"held-out epsilon loss: initial {before:.4f}, fine-tuned {after:.4f}")
    assert after < 0.8 * before, (before, after)


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    """A persistent XLA compilation cache for this module's command runs: each run builds its
    own jitted DP-SGD step, and with the cache runs of the same shapes and settings share one
    compile (~30 s of a ~35 s tiny run here) instead of repeating it."""
    from jax.experimental.compilation_cache import compilation_cache

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    before = {name: getattr(jax.config, name) for name in names}
    jax.config.update(names[0], str(tmp_path_factory.mktemp("xla-cache")))
    jax.config.update(names[1], 0.0)
    compilation_cache.reset_cache()
    yield
    for name, value in before.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    prior = tmp_path_factory.mktemp("prior") / "prior"
    checkpoints.save(prior, UNet(TINY, rngs=nnx.Rngs(0)),
                     {"unet": TINY.to_dict(), "schedule": SCHEDULE, "command": "test",
                      "class_names": [str(c) for c in range(10)]})
    return prior


@pytest.fixture(scope="module")
def tiny_unconditional_prior(tmp_path_factory):
    prior = tmp_path_factory.mktemp("prior") / "unconditional"
    config = UNetConfig(**{**TINY.to_dict(), "num_classes": 0})
    checkpoints.save(prior, UNet(config, rngs=nnx.Rngs(0)),
                     {"unet": config.to_dict(), "schedule": SCHEDULE, "command": "test"})
    return prior


def _finetune_argv(prior, *sets):
    """``pe-jax dp-finetune`` with the tiny prior, 20 steps in 2 ledger segments, 3 samples
    per class; every run of this module keeps these settings so that they share one compile."""
    base = ["prior=" + str(prior), "epsilon=8.0", "samples_per_class=3", "sample_steps=2",
            "dpsgd.steps=20", "dpsgd.batch_size=100", "dpsgd.learning_rate=0.01",
            "dpsgd.warmup_steps=0", "dpsgd.checkpoint_every=10", "dpsgd.pad_multiple=128"]
    return ["dp-finetune", "--quiet", *(f"--set={s}" for s in base + list(sets))]


def test_dp_finetune_on_digits_writes_the_outputs_of_a_run(tmp_path, capsys, compile_cache,
                                                           tiny_prior):
    out = tmp_path / "run"
    assert cli.main(_finetune_argv(tiny_prior, "metrics=fid") + ["--out", str(out)]) == 0
    assert "DP-SGD steps" in capsys.readouterr().out
    report = json.loads((out / "privacy.json").read_text())
    assert report["differentially_private"] and report["complete"]
    assert 7.0 < report["epsilon"] <= 8.0 and report["mechanism"] == ["DP-SGD"]
    dp = report["dp_sgd"]
    assert dp["steps"] == 20 and dp["clipping_norm"] == 1.0 and dp["sampling_rate"] == 100 / 1335
    assert dp["noise_multiplier"] == report["noise_multiplier"][0] and report["iterations"] == 2
    assert "os.urandom" in dp["noise_source"] and "labels" in report["private_data"]
    assert "DP-SGD steps" in (out / "privacy.txt").read_text()
    with np.load(out / "samples.npz") as saved:
        assert saved["images"].shape == (30, 8, 8, 1)
        np.testing.assert_array_equal(saved["labels"], np.repeat(np.arange(10), 3))
    assert (out / "samples.png").is_file() and (out / "metrics").is_dir()
    assert not (out / ".resume").exists() and not (out / "INCOMPLETE").exists()
    assert checkpoints.load_metadata(out / "checkpoint")["dp_sgd"] == dp


def test_dp_finetune_interrupted_by_sigterm_resumes_to_the_uninterrupted_outputs(
        tmp_path, capsys, monkeypatch, compile_cache, tiny_prior):
    argv = _finetune_argv(tiny_prior, "metrics=", "noise_seed=7")  # seeded: comparable runs
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert cli.main(argv + ["--out", str(whole)]) == 0
    save = resume.RunCheckpoint.save

    def save_then_sigterm(self, state, iteration, draws, noise_rng):
        save(self, state, iteration, draws, noise_rng)
        os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler stops a job: after segment 1

    monkeypatch.setattr(resume.RunCheckpoint, "save", save_then_sigterm)
    assert cli.main(argv + ["--out", str(parts)]) == 130
    monkeypatch.undo()
    assert f"continue with: pe-jax dp-finetune --resume {parts}" in capsys.readouterr().err
    assert (parts / "INCOMPLETE").is_file() and (parts / resume.FOLDER).is_dir()
    partial = json.loads((parts / "privacy.json").read_text())
    assert not partial["complete"] and partial["iterations"] == 1  # segment 1 of 2 recorded
    assert not (parts / "samples.npz").exists()
    saved = (parts / "ledger.json").read_text()
    for extra, message in [(["--set", "dpsgd.learning_rate=0.02"], "--resume refused"),
                           (["--out", str(tmp_path / "other")], "--out"),
                           (["--ledger", str(tmp_path / "l.json")], "--ledger")]:
        assert cli.main(["dp-finetune", "--quiet", "--resume", str(parts), *extra]) == 2
        assert message in capsys.readouterr().err
    assert (parts / "ledger.json").read_text() == saved  # refused: nothing spent
    assert cli.main(["dp-finetune", "--quiet", "--resume", str(parts)]) == 0
    assert (parts / "ledger.json").read_text() == (whole / "ledger.json").read_text()
    assert len(json.loads(saved)["events"]) == 1  # segment 2 was recorded once, on resume
    with np.load(whole / "samples.npz") as a, np.load(parts / "samples.npz") as b:
        np.testing.assert_array_equal(a["images"], b["images"])
    report = json.loads((parts / "privacy.json").read_text())
    assert report["complete"] and not report["differentially_private"]  # seeded noise
    assert "noise_seed" in report["dp_sgd"]["noise_source"] and report["iterations"] == 2
    assert not (parts / "INCOMPLETE").exists() and not (parts / resume.FOLDER).exists()


def test_dp_finetune_of_an_unconditional_prior_on_npz_data_resumes_into_its_shared_ledger(
        tmp_path, capsys, monkeypatch, compile_cache, tiny_unconditional_prior):
    digits = load_sklearn_digits()
    data = tmp_path / "digits.npz"
    np.savez(data, images=digits.images, labels=digits.labels,
             class_names=np.array(digits.class_names))
    argv = _finetune_argv(tiny_unconditional_prior, "metrics=", "noise_seed=7",
                          "data.source=npz", f"data.path={data}", "data.heldout=0.3")
    earlier = privacy.ReleaseEvent("DP-SGD", 3.0, sampling_rate=0.01, steps=5,
                                   clipping_norm=1.0, source="seeded", seeded=True)
    for name in ("whole", "parts"):  # each ledger file holds one earlier (seeded) release
        privacy.PrivacyLedger.open(tmp_path / f"{name}.json", delta=1e-5, adjacency="add_remove",
                                   epsilon_budget=20.0).record(earlier)
    whole = tmp_path / "whole"
    assert cli.main(argv + ["--out", str(whole), "--ledger", str(tmp_path / "whole.json")]) == 0
    report = json.loads((whole / "privacy.json").read_text())
    private, heldout = report["private_data"], report["public"]["heldout_reference"]
    assert private["data"] == "npz" and private["source"]["rows"] == 1797
    assert f"the data set {str(data)!r} (npz)" in private["description"]
    assert private["rows"] + heldout["rows"] == 1797 and heldout["fraction"] == 0.3
    assert report["dp_sgd"]["sampling_rate"] == 100 / private["rows"]
    assert "unconditional: its label embeddings were added at zero" in " ".join(
        report["public"]["generator"]["description"].split())
    with np.load(whole / "samples.npz") as saved:
        np.testing.assert_array_equal(saved["labels"], np.repeat(np.arange(10), 3))
    # The fine-tuned model is class-conditional, and DP-SGD moved its label embeddings.
    model, _ = checkpoints.load(whole / "checkpoint", _unet_from_metadata)
    assert model.config.num_classes == 10
    assert np.abs(np.asarray(model.label_embedding.embedding[...])).max() > 0

    save = resume.RunCheckpoint.save

    def save_then_sigterm(self, state, iteration, draws, noise_rng):
        save(self, state, iteration, draws, noise_rng)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(resume.RunCheckpoint, "save", save_then_sigterm)
    parts = tmp_path / "parts"
    assert cli.main(argv + ["--out", str(parts), "--ledger", str(tmp_path / "parts.json")]) == 130
    monkeypatch.undo()
    stored = json.loads((tmp_path / "parts.json").read_text())["events"]
    assert len(stored) == 2 and not (parts / "ledger.json").exists()  # earlier + segment 1
    capsys.readouterr()
    assert cli.main(["dp-finetune", "--quiet", "--resume", str(parts)]) == 0  # finds the file
    assert "3 releases in all (3 DP-SGD)" in capsys.readouterr().out
    assert (tmp_path / "parts.json").read_text() == (tmp_path / "whole.json").read_text()
    report = json.loads((parts / "privacy.json").read_text())
    assert report["composed"]["releases_before_this_run"] == 1 and report["iterations"] == 2
    with np.load(whole / "samples.npz") as a, np.load(parts / "samples.npz") as b:
        np.testing.assert_array_equal(a["images"], b["images"])


def test_a_conditional_prior_with_other_classes_is_refused_before_any_step(tmp_path, capsys,
                                                                           tiny_prior):
    digits = load_sklearn_digits()
    data = tmp_path / "three.npz"
    rows = digits.labels < 3
    np.savez(data, images=digits.images[rows], labels=digits.labels[rows],
             class_names=np.array(["0", "1", "2"]))
    argv = _finetune_argv(tiny_prior, "metrics=", "data.source=npz", f"data.path={data}")
    assert cli.main(argv + ["--out", str(tmp_path / "refused")]) == 2
    assert "with the data's 3 classes" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_dp_finetune_and_pe_run_compose_in_one_ledger_file(tmp_path, capsys, compile_cache,
                                                           tiny_prior):
    ledger = tmp_path / "digits-ledger.json"
    pe = ["run", "--quiet", "--out", str(tmp_path / "pe"), "--ledger", str(ledger),
          "--ledger-budget", "9", "--set", "generator.prior=" + str(tiny_prior),
          "--set", "generator.steps=2", "--set", "pe.iterations=2",
          "--set", "pe.samples_per_class=4", "--set", "metrics.names=",
          "--set", "privacy.epsilon=2.0"]
    assert cli.main(pe) == 0
    pe_epsilon = json.loads((tmp_path / "pe" / "privacy.json").read_text())["epsilon"]
    argv = _finetune_argv(tiny_prior, "metrics=") + ["--ledger", str(ledger)]
    assert cli.main(argv + ["--out", str(tmp_path / "dp")]) == 0
    assert "4 releases in all (2 DP-SGD, 2 discrete_gaussian)" in capsys.readouterr().out
    report = json.loads((tmp_path / "dp" / "privacy.json").read_text())
    composed = report["composed"]
    assert composed["ledger_file"] == str(ledger) and composed["releases_before_this_run"] == 2
    assert composed["mechanisms"] == {"DP-SGD": 2, "discrete_gaussian": 2}
    stored = privacy.PrivacyLedger.open(ledger, delta=1e-5)
    assert composed["epsilon"] == stored.epsilon_spent() and len(stored) == 4
    assert max(pe_epsilon, report["epsilon"]) < composed["epsilon"] <= 9.0
    assert not (tmp_path / "dp" / "ledger.json").exists()  # recorded in the shared file only
    text = " ".join((tmp_path / "dp" / "privacy.txt").read_text().split())
    assert "composed: 2 DP-SGD, 2 discrete_gaussian" in text
    saved = ledger.read_text()
    for extra, message in [((), "release refused: epsilon spent"),  # a second fine-tune
                           (("--set=noise_seed=1",), "cannot mix seeded and CSPRNG")]:
        assert cli.main(argv + ["--out", str(tmp_path / "refused"), *extra]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "refused").exists()
    assert ledger.read_text() == saved  # refused before any step


def test_mixed_ledger_epsilon_is_dp_accounting_composition_of_both():
    from dp_accounting.pld import privacy_loss_distribution as pld

    q, steps, sigma_sgd, sigma_pe, k, releases, delta = 0.05, 50, 1.2, 4.0, 2, 3, 1e-5
    ledger = privacy.PrivacyLedger(delta)
    for _ in range(releases):
        ledger.record(privacy.ReleaseEvent("discrete_gaussian", sigma_pe, k=k))
    ledger.record(privacy.ReleaseEvent("DP-SGD", sigma_sgd, sampling_rate=q, steps=steps,
                                       clipping_norm=1.0))
    # The two mechanisms' PLDs built straight from dp_accounting, on its default grid.
    sgd = pld.from_gaussian_mechanism(sigma_sgd, sampling_prob=q, pessimistic_estimate=True)
    pe = pld.from_discrete_gaussian_mechanism(sigma_pe * math.sqrt(k), pessimistic_estimate=True,
                                              use_connect_dots=True)
    sgd, pe = sgd.self_compose(steps), pe.self_compose(releases * k)  # k bins per release
    want = sgd.compose(pe).get_epsilon_for_delta(delta)
    assert ledger.epsilon_spent() == pytest.approx(want, rel=1e-9)
    alone = [sgd.get_epsilon_for_delta(delta), pe.get_epsilon_for_delta(delta)]
    assert max(alone) < ledger.epsilon_spent() < sum(alone)
    with pytest.raises(ValueError, match="cannot compose DP-SGD steps with exponential"):
        ledger.check(privacy.ReleaseEvent("exponential", 2.0))
