"""``pe-jax dp-finetune``: the DP-SGD baseline that PE is measured against.

``pe-jax dp-finetune [--config FILE] [--set key=value ...] [--out DIR] [--resume DIR]
[--ledger FILE] [--devices N]``
fine-tunes a diffusion prior (the shipped ``pe_jax/assets/prior_digits8``, or ``--set
prior=DIR``: any ``pe_jax.checkpoints`` folder, class-conditional or unconditional) on the
private images of the config's ``data`` section (by default the private digits) with DP-SGD
(``pe_jax.training.dpsgd``, on jax-privacy), calibrated so that all its steps spend at most
``epsilon``; then it samples ``samples_per_class`` images per class from the fine-tuned model
and writes what ``pe-jax run`` writes, so that the two compare file for file:

* ``samples.npz`` and ``samples.png``: the synthetic data set and its grid;
* ``metrics/``: FID, precision/recall and downstream accuracy on the held-out rows (the
  same callbacks as ``pe-jax run``, logged once, at the last step);
* ``privacy.json`` / ``privacy.txt``: the report of ``pe-jax run`` (same schema), with the
  ledger's ``DP-SGD`` events and a ``dp_sgd`` section (sampling rate, steps, noise
  multiplier, clipping norm, batch selection, noise source); ``ledger.json``: the run's ledger;
* ``checkpoint/``: the fine-tuned EMA model (``DiffusionGenerator.from_checkpoint`` loads
  it), covered by the same guarantee;
* ``config.json`` and ``training.json`` (steps, wall time, devices; not the training loss,
  which is computed on the private rows without noise).

The randomness (the DP noise's key, the Poisson sampler's seed, the training and sampling
keys) comes from ``os.urandom``; ``noise_seed`` >= 0 derives it from that seed instead
(reproducible, NOT private: the report says so). Nothing spent is lost to an interruption:
the ledger is written before each segment of ``dpsgd.checkpoint_every`` steps and the
training state after it, and ``--resume DIR`` continues with the same batches and noise,
recording nothing twice. ``--ledger FILE`` records the steps in a ledger file shared with
other runs on the same private data (``pe-jax run --ledger``), so that a fine-tune and PE
runs compose (``pe_jax.commands.shared_ledger``). The DP-SGD step runs data-parallel over the
local devices (``--devices N``: the first N), each taking its share of the padded batch.
Without ``--config`` it runs ``pe_jax/configs/dp_finetune_digits.py``.
"""

import argparse
import json
import os
import pathlib
import sys
import time
from typing import TYPE_CHECKING

import ml_collections

from pe_jax._checks import check_int, require
from pe_jax.commands import (INCOMPLETE_FILE, INTERRUPTED_STATUS, SAMPLES_FILE,
                             SAMPLES_GRID_FILE, add_config_arguments, check_devices,
                             device_mesh, output_dir, shared_ledger, sigterm_interrupts)
from pe_jax.configs import CONFIG_DIR, load_config, load_saved_config

if TYPE_CHECKING:
    from pe_jax.training.dpsgd import DPSGDSettings

NAME = "dp-finetune"
HELP = ("fine-tune a diffusion prior on the private images with DP-SGD, then sample (the "
        "baseline PE is measured against)")
DEFAULT_CONFIG = CONFIG_DIR / "dp_finetune_digits.py"
CONFIG_FILE = "config.json"
LEDGER_FILE = "ledger.json"
MODEL_DIR = "checkpoint"
NOISE_SOURCE = ("jax.random (threefry2x32) float32 Gaussian noise, keyed by 64 bits from "
                "os.urandom")
SEEDED_SOURCE = ("jax.random (threefry2x32) float32 Gaussian noise, keyed by the config's "
                 "noise_seed (seeded: reproducible, NOT private)")
NOISE_MEANS = (
    "The DP-SGD noise is drawn on the device by JAX's counter-based PRNG from a key read from "
    "the operating system's entropy once per run; the key is never written outside the run's "
    "hidden .resume/ folder (owner-only, deleted when the run completes). The accountant "
    "assumes exact real-valued Gaussian noise: float32 normals from a PRNG approximate it "
    "(finite precision, pseudo-randomness), the same approximation every DP-SGD library "
    "makes, unlike PE's releases, whose integer noise is sampled exactly from a CSPRNG.")
SEEDED_MEANS = (
    "The DP-SGD noise is drawn by JAX's PRNG from keys derived from the config's noise_seed: "
    "whoever knows the seed can recompute the noise and the batches, so this run is NOT "
    "differentially private (for tests and reproducible research only).")
LABELS_PRIVATE = (
    "the labels of the private rows are private: each row's loss is conditioned on its own "
    "label inside the clipped gradient, so they are covered by the DP-SGD guarantee (unlike "
    "pe-jax run, whose per-class sample counts are public settings)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, DEFAULT_CONFIG, "pe_jax/configs/dp_finetune_digits.py")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--resume", type=pathlib.Path, default=None, metavar="DIR",
        help="continue the interrupted run in the output folder DIR with its own config "
             "(DIR/config.json); refused, before any step, if the config, the data, the "
             "prior or the build differ")
    shared_ledger.add_arguments(parser, "DP-SGD steps")
    parser.add_argument(
        "--devices", type=int, default=None, metavar="N",
        help="train on the first N local devices (default: all of them), each taking its "
             "share of every padded batch; the result does not depend on N up to float "
             "rounding. When dpsgd.pad_multiple does not split evenly over N devices, the "
             "run uses the most of them that it does split over, and says so")


def execute(args: argparse.Namespace) -> int:
    from pe_jax import reporting

    if args.resume is not None:
        require(args.out is None or pathlib.Path(args.out) == args.resume, "--out",
                "left out with --resume (the run continues in its own folder)", args.out)
        out = args.resume
        config = (load_saved_config(out / CONFIG_FILE, args.set)
                  if args.config == str(DEFAULT_CONFIG) else load_config(args.config, args.set))
    else:
        config = load_config(args.config, args.set)
        out = output_dir(args.out, config.name)
    try:
        with sigterm_interrupts():
            report = dp_finetune(config, out, resume=args.resume is not None,
                                 progress=not args.quiet, ledger_path=args.ledger,
                                 ledger_budget=args.ledger_budget, devices=args.devices)
    except KeyboardInterrupt:
        print(f"pe-jax: interrupted; continue with: pe-jax {NAME} --resume {out}",
              file=sys.stderr)
        return INTERRUPTED_STATUS
    dp = report["dp_sgd"]
    print(f"wrote {out}: {reporting.guarantee(report)}, {dp['steps']} DP-SGD steps, "
          f"sampling rate {dp['sampling_rate']:.4g}, sigma = {dp['noise_multiplier']:.4g}")
    shared_ledger.print_summary(report)
    return 0


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks every setting ``dp-finetune`` reads, before any folder, ledger or data."""
    from pe_jax.configs import validate
    from pe_jax.metrics.callbacks import METRICS

    validate.check_data(config.data)
    validate.check_checkpoint("prior", config.prior)
    validate.check_real("epsilon", config.epsilon, 0, lo_open=True)
    validate.check_real("delta", config.delta, 0, 1, lo_open=True, hi_open=True)
    check_int("samples_per_class", config.samples_per_class, 1)
    check_int("sample_steps", config.sample_steps, 1)
    validate.check_real("guidance", config.guidance, 0)
    validate.check_noise_seed("noise_seed", config.noise_seed)
    dp = config.dpsgd
    for name in ("steps", "batch_size", "checkpoint_every", "pad_multiple"):
        check_int(f"dpsgd.{name}", dp[name], 1)
    check_int("dpsgd.warmup_steps", dp.warmup_steps, 0)
    validate.check_real("dpsgd.clipping_norm", dp.clipping_norm, 0, lo_open=True)
    validate.check_real("dpsgd.learning_rate", dp.learning_rate, 0, lo_open=True)
    validate.check_real("dpsgd.weight_decay", dp.weight_decay, 0)
    validate.check_real("dpsgd.ema_decay", dp.ema_decay, 0, 1, hi_open=True)
    validate.check_real("dpsgd.label_dropout", dp.label_dropout, 0, 1, hi_open=True)
    validate.check_names("metrics", config.metrics, METRICS)
    validate.check_choice("metrics_embedding", config.metrics_embedding,
                          ("encoder", "inception", "pixels", "random_projection"))
    validate.check_checkpoint("encoder_checkpoint", config.encoder_checkpoint)
    validate.check_bool("tensorboard", config.tensorboard)


def _run_keys(noise_seed: int) -> dict:
    """The run's randomness: three raw JAX keys (two uint32 words each) and the sampler's
    seed, from the operating system, or from ``noise_seed`` >= 0 (reproducible)."""
    import numpy as np

    draw = (os.urandom if noise_seed == -1 else np.random.default_rng(noise_seed).bytes)

    def words(count: int) -> list[int]:
        return [int.from_bytes(draw(4), "little") for _ in range(count)]

    return {"key": words(2), "noise_key": words(2), "sample_key": words(2),
            "sampler_seed": int.from_bytes(draw(16), "little")}


def dp_finetune(config: ml_collections.ConfigDict, out: pathlib.Path, *, resume: bool = False,
                progress: bool = False, ledger_path: pathlib.Path | None = None,
                ledger_budget: float | None = None, devices: int | None = None) -> dict:
    """Fine-tunes, samples and writes the outputs above; returns the privacy report.

    ``ledger_path`` / ``ledger_budget``: ``--ledger`` / ``--ledger-budget``; the whole run is
    checked against the ledger's budget before any folder is made or any step is taken.
    ``devices``: ``--devices``.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pe_jax import checkpoints, privacy, reporting, sharding
    from pe_jax import resume as run_checkpoint
    from pe_jax.apis.diffusion import DEFAULT_PRIOR, DiffusionGenerator, _unet_from_metadata
    from pe_jax.configs import build
    from pe_jax.diffusion import make_schedule
    from pe_jax.metrics.callbacks import make_callbacks
    from pe_jax.models import encoder
    from pe_jax.models.unet import with_labels
    from pe_jax.privacy import dpsgd_accounting
    from pe_jax.training import dpsgd
    from pe_jax.training.diffusion import TrainSettings
    from pe_jax.training.public_data import to_model_range

    validate_config(config)
    devices = check_devices(devices)
    if resume:
        ledger_path = shared_ledger.resumed_ledger(out, ledger_path, ledger_budget)
    else:
        reporting.check_output_dir(out)  # before anything is created or spent
    dp = config.dpsgd
    source_data = build.data_source(config.data)
    private, reference = build.private_and_reference(source_data, config.data)
    rows = len(private.labels)
    require(dp.batch_size <= rows, "dpsgd.batch_size", f"at most the {rows} private rows",
            dp.batch_size)
    rate = dp.batch_size / rows
    sigma = dpsgd_accounting.noise_multiplier(config.epsilon, config.delta, rate, dp.steps)
    settings = dpsgd.DPSGDSettings(
        TrainSettings(steps=dp.steps, learning_rate=dp.learning_rate,
                      warmup_steps=dp.warmup_steps, weight_decay=dp.weight_decay,
                      ema_decay=dp.ema_decay, label_dropout=dp.label_dropout,
                      checkpoint_every=dp.checkpoint_every, log_every=dp.checkpoint_every),
        sampling_rate=rate, expected_batch_size=float(dp.batch_size),
        clipping_norm=dp.clipping_norm, noise_multiplier=sigma, pad_multiple=dp.pad_multiple)
    prior_path = pathlib.Path(config.prior or DEFAULT_PRIOR)
    model, metadata = checkpoints.load(prior_path, _unet_from_metadata)
    shape = private.images.shape[1:]
    require((model.config.resolution, model.config.resolution, model.config.channels)
            == shape and model.config.num_classes in (0, private.num_classes), "prior",
            f"a {shape} prior, unconditional or class-conditional with the data's "
            f"{private.num_classes} classes", f"{str(prior_path)!r}")
    unconditional = model.config.num_classes == 0
    if unconditional:
        model = with_labels(model, private.num_classes)
    schedule = make_schedule(**metadata["schedule"])
    seeded = config.noise_seed != -1
    source = SEEDED_SOURCE if seeded else NOISE_SOURCE
    event = settings.event(dp.steps, source, seeded=seeded)

    def open_ledger(path: pathlib.Path | None, budget: float | None) -> privacy.PrivacyLedger:
        return shared_ledger.open_ledger(path, budget, delta=config.delta,
                                         own_budget=config.epsilon)

    if not resume:  # the whole run against the budget, before anything is written
        ledger = open_ledger(ledger_path, ledger_budget)
        run_start = len(ledger)
        ledger.check(event)
    public_files = [prior_path] + ([pathlib.Path(config.encoder_checkpoint or encoder.SHIPPED)]
                                   if config.metrics_embedding == "encoder" else [])
    fingerprint = run_checkpoint.build_fingerprint(
        config.to_dict(), run_checkpoint.sha256_arrays(private.images, private.labels),
        run_checkpoint.sha256_files(public_files))
    shared = ledger_path is not None
    if resume:
        checkpoint = run_checkpoint.RunCheckpoint.open(out, fingerprint)
        ledger = open_ledger(ledger_path if shared else out / LEDGER_FILE,
                             None if shared else config.epsilon)
        run_start = checkpoint.run["run_start"]
    else:
        out = reporting.prepare_output_dir(out)
        (out / INCOMPLETE_FILE).write_text(
            f"This run has not finished: its outputs are partial. Continue it with\n"
            f"  pe-jax {NAME} --resume {out}\n")
        (out / CONFIG_FILE).write_text(config.to_json(indent=2) + "\n")
        if not shared:  # the run's own ledger file
            ledger = open_ledger(out / LEDGER_FILE, config.epsilon)
        checkpoint = run_checkpoint.RunCheckpoint.create(out, fingerprint, run={
            **_run_keys(config.noise_seed), **shared_ledger.run_record(
                ledger_path if shared else out / LEDGER_FILE, shared, run_start)})
    keys = checkpoint.run
    recorded = sum(event.steps for event in ledger.events[run_start:])
    mesh = device_mesh(devices, dp.pad_multiple,
                       f"dpsgd.pad_multiple = {dp.pad_multiple} (the padded batches' rows)")
    private_data, public = _report_inputs(config, source_data.describe(), private, reference,
                                          prior_path, metadata, unconditional)
    non_private_outputs = {"metrics/": (
        f"quality metrics ({config.metrics}) measured without noise on the "
        f"{len(reference.labels)} held-out real rows: statistics of those rows, which the "
        "guarantee does not cover")} if config.metrics else {}

    def write_report(complete: bool) -> dict:
        report = reporting.privacy_report(
            ledger, target_epsilon=config.epsilon, private_data=private_data, public=public,
            non_private_outputs=non_private_outputs, run_start=run_start,
            shared_ledger=shared,
            planned_iterations=None if complete else -(-dp.steps // dp.checkpoint_every))
        report.update(_dpsgd_section(settings, dp.steps, source))
        reporting.write_privacy_report(out, report)
        return report

    start = time.perf_counter()
    try:
        result = dpsgd.finetune(
            model, schedule, to_model_range(private.images, model.config.channels),
            private.labels, settings, key=jax.random.wrap_key_data(jnp.asarray(
                keys["key"], jnp.uint32)), noise_key=jnp.asarray(keys["noise_key"], jnp.uint32),
            sampler_seed=keys["sampler_seed"], ledger=ledger, recorded_steps=recorded,
            source=source, seeded=seeded, checkpoint=checkpoint, mesh=mesh, progress=progress)
    except BaseException:
        write_report(complete=False)  # every segment recorded so far, marked incomplete
        raise
    generator = DiffusionGenerator(result.model, schedule, steps=config.sample_steps,
                                   guidance=config.guidance)
    labels = np.repeat(np.arange(private.num_classes, dtype=np.int32), config.samples_per_class)
    samples = generator.random(jax.random.wrap_key_data(jnp.asarray(keys["sample_key"],
                                                                    jnp.uint32)),
                               len(labels), jnp.asarray(labels))
    images = np.asarray(generator.images(samples))
    reporting.save_samples(out / SAMPLES_FILE, images, labels, private.class_names)
    reporting.save_image_grid(out / SAMPLES_GRID_FILE, images, labels, private.num_classes)
    for callback in make_callbacks(config, out, generator=generator,
                                   num_classes=private.num_classes,
                                   reference_images=reference.images,
                                   reference_labels=reference.labels):
        callback.measure(dp.steps, ledger.epsilon_spent(run_start), samples, labels)
    (out / "training.json").write_text(json.dumps({
        "steps": dp.steps, "seconds": round(time.perf_counter() - start, 1),
        "train_seconds": round(result.seconds, 1),
        "devices": sharding.device_count(mesh),
        "backend": jax.default_backend(),
        "loss": "not written: it is computed on the private rows without noise"}, indent=2)
        + "\n")
    report = write_report(complete=True)
    checkpoints.save(out / MODEL_DIR, result.model, {
        "unet": model.config.to_dict(), "schedule": metadata["schedule"],
        "sampling": {"steps": config.sample_steps, "guidance": config.guidance},
        "class_names": list(private.class_names), "fine_tuned_from": str(prior_path),
        "guarantee": reporting.guarantee(report), "dp_sgd": report["dp_sgd"]})
    checkpoint.remove()
    (out / INCOMPLETE_FILE).unlink()
    return report


def _dpsgd_section(settings: "DPSGDSettings", steps: int, source: str) -> dict:
    """The report's DP-SGD entries: its sensitivity, how it ran, and the ``dp_sgd`` record."""
    from pe_jax.privacy import dpsgd_accounting

    c, sigma, rate = settings.clipping_norm, settings.noise_multiplier, settings.sampling_rate
    means = SEEDED_MEANS if source == SEEDED_SOURCE else NOISE_MEANS
    return {
        "accountant": dpsgd_accounting.ACCOUNTANT,
        "sensitivity": f"L2 {c:g} per step: each sampled row's gradient is clipped to norm {c:g}",
        "how": [
            f"  {steps} DP-SGD steps in {-(-steps // settings.train.checkpoint_every)} recorded "
            f"segments. Each step samples every protected row independently with probability "
            f"{rate:.4g} (Poisson sampling, jax-privacy), clips each sampled row's gradient to "
            f"L2 norm {c:g} (jax-privacy's clipped_grad), sums them and adds Gaussian noise of "
            f"standard deviation sigma * {c:g}, sigma = {sigma:.4g}; the model and the "
            "synthetic samples drawn from it are post-processing.",
            f"  Labels: {LABELS_PRIVATE}.",
            f"  Noise: {source}. {means}",
            f"  Accountant: {dpsgd_accounting.ACCOUNTANT}."],
        "dp_sgd": {
            "mechanism": dpsgd_accounting.MECHANISM, "sampling_rate": rate, "steps": steps,
            "noise_multiplier": sigma, "clipping_norm": c,
            "expected_batch_size": settings.expected_batch_size,
            "batch_selection": "Poisson sampling (jax_privacy.batch_selection."
                               "CyclicPoissonSampling, cycle length 1, independent partition)",
            "accountant": dpsgd_accounting.ACCOUNTANT,
            "noise_source": source, "noise_source_means": means,
            "labels": LABELS_PRIVATE},
    }


def _report_inputs(config: ml_collections.ConfigDict, described: dict, private, reference,
                   prior_path: pathlib.Path, metadata: dict, unconditional: bool
                   ) -> tuple[dict, dict]:
    """The report's ``private_data`` and ``public`` entries (what is and is not protected);
    ``described``: the data set's ``describe()``."""
    from pe_jax.configs import build
    from pe_jax.data import HELDOUT_RULE, HELDOUT_SALT

    rows = len(private.labels) + len(reference.labels)
    private_data = {
        "description": f"the {len(private.labels):,} of the {rows:,} rows of "
                       f"{build.data_set_phrase(config.data, described)} that the fixed "
                       "held-out split leaves, images and labels; only they are trained on, "
                       "and the guarantee covers only them",
        "data": config.data.source, "source": described, "rows": len(private.labels),
        "rows_in_data_set": rows, "labels": LABELS_PRIVATE}
    labels = (" It was unconditional: its label embeddings were added at zero and are learnt "
              "from the private rows, inside the DP-SGD guarantee." if unconditional else "")
    public = {
        "generator": {
            "description": "the diffusion prior that is fine-tuned, trained on public data only "
                           "(its training command and data are in its metadata)." + labels,
            "checkpoint": str(prior_path), "command": metadata.get("command"),
            "training_data": metadata.get("data")},
        "private_row_count": {
            "description": "the number of private rows, which sets the sampling rate "
                           "batch_size / rows (the size of a public data set split by a "
                           "fixed public rule)",
            "value": len(private.labels)},
        "heldout_reference": {
            "description": f"the {len(reference.labels):,} real rows that the fixed split "
                           "holds out: never trained on; the quality metrics are measured on "
                           "them without noise, outside the guarantee",
            "rows": len(reference.labels), "fraction": config.data.heldout,
            "salt": HELDOUT_SALT, "rule": HELDOUT_RULE},
        "samples_per_class": {
            "description": "the number of synthetic samples drawn per class, set in the config "
                           "(not read from the private labels)",
            "value": config.samples_per_class},
        "settings": {"description": "every setting of the run, in config.json"},
    }
    return private_data, public
