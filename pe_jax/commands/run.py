"""``pe-jax run``: Private Evolution on a config's private data, with its outputs on disk.

``pe-jax run [--config FILE] [--set key=value ...] [--out DIR] [--ledger FILE]`` writes the
synthetic samples (``samples.npz``, PNG grids) and the privacy report (``privacy.json``,
``privacy.txt``) to a new output folder. Without ``--config`` it runs the embedded default,
``pe_jax/configs/digits.py``. With ``--ledger`` the run's releases are appended to a ledger
file shared by runs on the same private data, so that repeated runs compose; without it the
run keeps its own ledger in ``ledger.json``. It runs on all local devices (``--devices N``:
the first N), with the same results on any number of them.

Nothing spent is lost to an interruption. The ledger is written at each release, the privacy
report and the iteration's picture after each iteration, and the final samples and report
before any final metrics. Until the run ends the folder holds an ``INCOMPLETE`` marker and a
hidden ``.resume/`` checkpoint (``pe_jax.resume``); Ctrl-C or SIGTERM prints the command that
continues the run, ``pe-jax run --resume DIR``, which finishes it exactly as an uninterrupted
run would have, or refuses, before any release, if the config, the data, the public models
or the build changed.
"""

import argparse
import hashlib
import json
import pathlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import ml_collections

from pe_jax.commands import (INCOMPLETE_FILE, INTERRUPTED_STATUS, SAMPLES_FILE,
                             SAMPLES_GRID_FILE, add_config_arguments, check_devices,
                             device_mesh, distributed, output_dir, shared_ledger,
                             sigterm_interrupts)
from pe_jax.commands.shared_ledger import ADJACENCY
from pe_jax.configs import DEFAULT_CONFIG, load_config, load_saved_config

if TYPE_CHECKING:
    import jax

    from pe_jax.data import ImageSource, LabelledImages
    from pe_jax.evolve import PEConfig
    from pe_jax.privacy import PrivacyLedger

NAME = "run"
HELP = "run Private Evolution and write its outputs"
CONFIG_FILE = "config.json"
LEDGER_FILE = "ledger.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, DEFAULT_CONFIG, "the embedded digits run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    shared_ledger.add_arguments(parser, "releases")
    parser.add_argument(
        "--resume", type=pathlib.Path, default=None, metavar="DIR",
        help="continue the interrupted run in the output folder DIR with its own config "
             "(DIR/config.json); the result and ledger are those of an uninterrupted run. "
             "Refused, before any release, if a --set, --config, the data, the public models "
             "or the build differ from the interrupted run's")
    parser.add_argument(
        "--devices", type=int, default=None, metavar="N",
        help="run on the first N local devices (default: all of them), with the private rows "
             "and the population split over them; the results do not depend on N (up to the "
             "diffusion prior's float rounding; the glyph generator's bit for bit). When the "
             "population does not split evenly over N devices, the run uses the most of them "
             "that it does split over, and says so")
    distributed.add_arguments(parser)


def execute(args: argparse.Namespace) -> int:
    from pe_jax import processes, reporting

    distributed.join(args, out_given=args.out is not None or args.resume is not None)
    if args.resume is not None:
        out = args.resume
        config = (load_saved_config(out / CONFIG_FILE, args.set)
                  if args.config == str(DEFAULT_CONFIG) else load_config(args.config, args.set))
        if args.out is not None and pathlib.Path(args.out) != out:
            raise ValueError("--out names a new run's folder; --resume continues the run in "
                             "its own folder, so give one or the other")
    else:
        config = load_config(args.config, args.set)
        out = output_dir(args.out, config.name)
    try:
        with sigterm_interrupts():
            report = run_command(config, out, progress=not args.quiet, ledger_path=args.ledger,
                                 ledger_budget=args.ledger_budget,
                                 resume=args.resume is not None, devices=args.devices)
    except KeyboardInterrupt:
        if processes.is_writer():
            print(_interrupted(out), file=sys.stderr)
        return INTERRUPTED_STATUS
    except Exception as error:
        processes.stop_on_error(error)  # a multi-process run: no waiting for the others
        raise
    if not processes.is_writer():
        return 0
    print(f"wrote {out}: {reporting.guarantee(report)}, T = {report['iterations']}, "
          f"sigma = {report['noise_multiplier'][0]:.4g}")
    shared_ledger.print_summary(report)
    return 0


def _interrupted(out: pathlib.Path) -> str:
    """The one line printed when a run is interrupted."""
    from pe_jax import resume

    if not (out / resume.FOLDER).is_dir():
        return "pe-jax: interrupted before the run started; nothing was released"
    return (f"pe-jax: interrupted; what was spent is recorded in {out}; continue with: "
            f"pe-jax run --resume {out}")


def run_command(config: ml_collections.ConfigDict, out: pathlib.Path, progress: bool,
                ledger_path: pathlib.Path | None = None,
                ledger_budget: float | None = None, resume: bool = False,
                devices: int | None = None) -> dict:
    """Runs PE as the config says and writes its outputs; returns the privacy report.

    ``ledger_path`` / ``ledger_budget``: see ``--ledger`` and ``--ledger-budget``. A shared
    ledger is opened and the whole run checked against its budget before any private data is
    read. ``resume``: continue the interrupted run in ``out`` (``--resume``). ``devices``:
    how many local devices to run on (``--devices``; default all, see :func:`run_mesh`).

    In a multi-process run (``--distributed``) every process calls this with the same
    arguments: each reads and embeds its share of the private rows, the run uses every device
    of every process, and process 0 alone writes (``pe_jax.commands.distributed``); a check
    that fails on any process stops them all before anything is released.
    """
    import jax

    from pe_jax import evolve, privacy, processes, reporting
    from pe_jax import resume as checkpoints
    from pe_jax.apis.factory import make_generator
    from pe_jax.configs import build
    from pe_jax.configs.validate import check_population_memory, validate_run_config
    from pe_jax.metrics.callbacks import measure_initial

    # Every setting, before any folder, ledger or data; the same settings on every process.
    processes.agree(lambda: validate_run_config(config), "the run's settings")
    processes.check_same(hashlib.sha256(config.to_json().encode()).hexdigest(),
                         "the run's config (--config and every --set)")
    writer = processes.is_writer()
    devices = check_devices(devices)
    non_private = config.privacy.non_private
    if non_private and ledger_path is not None:
        raise ValueError("privacy.non_private=true releases clean counts: it cannot be "
                         "recorded in a shared --ledger file, whose runs would then compose to "
                         "no guarantee; leave --ledger out")
    sigma, noise_rng = build.noise_plan(config.privacy, config.pe)
    event = privacy.release_event(noise_multiplier=sigma, k=config.pe.k, rng=noise_rng,
                                  non_private=non_private)
    shared = ledger_path is not None
    if resume:
        ledger_path = shared_ledger.resumed_ledger(out, ledger_path, ledger_budget)
        ledger, run_start = None, None
    else:
        # Before the ledger file (a refused --out creates none), on every process before any
        # process makes the folder.
        processes.agree(lambda: reporting.check_output_dir(out), "--out")
        ledger = _ledger_everywhere(ledger_path,
                                    lambda: _ledger(config, ledger_path, ledger_budget))
        run_start = len(ledger)
        ledger.check(event, times=config.pe.iterations)
    source = build.data_source(config.data)  # after the budget check: digits are read here
    check_population_memory("pe.samples_per_class", config.pe.samples_per_class,
                            source.num_classes, source.image_shape)
    private, reference = build.private_and_reference(source, config.data)  # this host's share
    private_rows = processes.total_over_processes(len(private.labels))
    pe_config = build.pe_config(config.pe, noise_multiplier=sigma, non_private=non_private,
                                num_classes=private.num_classes)
    generator, generator_description = make_generator(config.generator, private.class_names,
                                                      private.images.shape[1:])
    embedder = build.embedder(config.embedding.name, config.embedding.checkpoint)
    mesh = (_global_mesh(len(pe_config.layout.labels)) if processes.multiprocess()
            else run_mesh(devices, len(pe_config.layout.labels)))
    fingerprint = checkpoints.build_fingerprint(
        config.to_dict(),
        processes.combined_sha256(checkpoints.sha256_arrays(private.images, private.labels)),
        checkpoints.sha256_files(_public_model_files(config, generator)))
    if resume:
        checkpoint = checkpoints.RunCheckpoint.open(out, fingerprint)
        shared = checkpoint.run["shared_ledger"]
        path = ledger_path if shared else out / LEDGER_FILE
        ledger = _ledger_everywhere(path, lambda: _ledger(
            config, path, None if shared else _own_budget(config)))
        run_start = checkpoint.run["run_start"]
    else:
        if writer:
            reporting.prepare_output_dir(out)
            (out / INCOMPLETE_FILE).write_text(
                "This run has not finished: its outputs are partial. Continue it with\n"
                f"  pe-jax run --resume {out}\n")
            (out / CONFIG_FILE).write_text(config.to_json(indent=2) + "\n")
            (out / "iterations").mkdir()
        if not shared:  # the run's own ledger, written at each release
            ledger = _ledger_everywhere(out / LEDGER_FILE, lambda: privacy.PrivacyLedger.open(
                out / LEDGER_FILE, delta=config.privacy.delta, adjacency=ADJACENCY,
                epsilon_budget=_own_budget(config)))
        checkpoint = checkpoints.RunCheckpoint.create(
            out, fingerprint, run=shared_ledger.run_record(
                ledger_path if shared else out / LEDGER_FILE, shared, run_start))
    private_data, public = _report_inputs(config, source, private_rows, reference, pe_config,
                                          generator_description)
    non_private_outputs = {"metrics/": (
        f"quality metrics ({config.metrics.names}) measured without noise on the "
        f"{len(reference.labels)} held-out real rows: statistics of those rows, which the "
        "guarantee does not cover")} if config.metrics.names else {}

    def write_report(complete: bool = False) -> dict:
        report = reporting.privacy_report(
            ledger, target_epsilon=_own_budget(config), private_data=private_data, public=public,
            non_private_outputs=non_private_outputs, run_start=run_start,
            shared_ledger=shared,
            planned_iterations=None if complete else config.pe.iterations)
        if writer:
            reporting.write_privacy_report(out, report)
        return report

    def save_iteration(result: evolve.IterationResult) -> None:
        """The iteration's picture and the report of every release so far."""
        reporting.save_image_grid(out / "iterations" / f"iter_{result.iteration:03d}.png",
                                  generator.images(result.samples), result.labels,
                                  private.num_classes)
        write_report()

    final_ran = []  # whether the last iteration's callbacks ran in this call

    def save_samples(samples) -> None:
        images = generator.images(samples)
        reporting.save_samples(out / SAMPLES_FILE, images, pe_config.layout.labels,
                               private.class_names)
        reporting.save_image_grid(out / SAMPLES_GRID_FILE, images, pe_config.layout.labels,
                                  private.num_classes)

    def save_final(result: evolve.IterationResult) -> None:
        if result.iteration == config.pe.iterations:  # before the final metrics
            save_samples(result.samples)

    def note_final(result: evolve.IterationResult) -> None:  # on every process
        if result.iteration == config.pe.iterations:
            final_ran.append(True)

    metric_callbacks = build.metric_callbacks(
        config.metrics, iterations=config.pe.iterations, out=out, generator=generator,
        reference=reference)
    try:
        result = evolve.run(
            jax.random.key(config.seed), pe_config, generator=generator, embedder=embedder,
            private_images=private.images, private_labels=private.labels, ledger=ledger,
            callbacks=[*evolve.on_process_zero([save_iteration, save_final, *metric_callbacks]),
                       note_final],
            progress=progress and writer, noise_rng=noise_rng, checkpoint=checkpoint, mesh=mesh,
            on_start=lambda samples, labels: writer and measure_initial(metric_callbacks,
                                                                        samples, labels))
    except BaseException:
        write_report()  # every release recorded so far, marked incomplete
        raise
    if not final_ran:  # the last iteration's callbacks ran before this run resumed
        samples = processes.gather(result.samples)
        if writer:
            save_samples(samples)
    report = write_report(complete=True)
    checkpoint.remove()
    if writer:
        (out / INCOMPLETE_FILE).unlink()
    return report


def run_mesh(devices: int | None, population: int) -> "jax.sharding.Mesh | None":
    """The mesh a run of ``population`` synthetic samples uses on ``devices`` local devices
    (None: all of them): the most of them that split the population evenly
    (``pe_jax.commands.device_mesh``). Where the run happens never changes its results
    (``pe_jax.sharding``).
    """
    return device_mesh(devices, population, f"the population of {population} samples")


def _global_mesh(population: int) -> "jax.sharding.Mesh":
    """The mesh of a multi-process run: every device of every process, which must split the
    ``population`` evenly (unlike ``--devices``, no process can be left out)."""
    import jax

    from pe_jax import sharding

    if population % jax.device_count():
        raise ValueError(f"--distributed: the population of {population} samples (classes x "
                         f"pe.samples_per_class) must split evenly over the job's "
                         f"{jax.device_count()} devices")
    return sharding.global_mesh()


def _ledger_everywhere(path: pathlib.Path | None,
                       open_ledger: "Callable[[], PrivacyLedger]") -> "PrivacyLedger":
    """``open_ledger()``, which reads (or creates) the ledger file ``path``.

    In a multi-process run process 0 alone opens, and so writes, the file; every other
    process then reads it into a ledger of its own that writes nothing (each process keeps
    the same ledger: process 0's noise is recorded by all). Without a file (``path`` None)
    every process opens its own fresh one.
    """
    from pe_jax import privacy, processes

    if path is None or not processes.multiprocess():
        return open_ledger()
    ledger = processes.agree(lambda: open_ledger() if processes.is_writer() else None,
                             f"the privacy ledger {str(path)!r}")
    return ledger if ledger is not None else privacy.PrivacyLedger.from_dict(
        json.loads(path.read_text()))


def _public_model_files(config: ml_collections.ConfigDict, generator: object
                        ) -> list[pathlib.Path]:
    """The files of the public models the run uses: fonts or prior, embedding, metrics."""
    from pe_jax.apis.diffusion import DEFAULT_PRIOR
    from pe_jax.models import encoder

    files = list(getattr(generator, "font_paths", ()))
    if config.generator.name == "diffusion":
        files.append(pathlib.Path(config.generator.prior or DEFAULT_PRIOR))
    spaces = [(config.embedding.name, config.embedding.checkpoint)]
    if config.metrics.names:
        spaces.append((config.metrics.embedding, config.metrics.checkpoint))
    for name, checkpoint in spaces:
        if name == "encoder":
            files.append(pathlib.Path(checkpoint or encoder.SHIPPED))
        elif name == "inception":
            files.append(pathlib.Path(checkpoint))
    return files


def _own_budget(config: ml_collections.ConfigDict) -> float | None:
    """The budget of a run's own ledger: its epsilon, or none for a non-private baseline."""
    return None if config.privacy.non_private else config.privacy.epsilon


def _ledger(config: ml_collections.ConfigDict, path: pathlib.Path | None,
            budget: float | None) -> "PrivacyLedger":
    """The run's ledger (``shared_ledger.open_ledger``) at the run's delta."""
    return shared_ledger.open_ledger(path, budget, delta=config.privacy.delta,
                                     own_budget=_own_budget(config))


EMBEDDING_DESCRIPTIONS = {
    "pixels": "the images' pixel values; no model, nothing learned",
    "random_projection": "a Gaussian random projection of the pixels from a fixed seed; "
                         "nothing learned",
    "encoder": "the glyph encoder checkpoint named in privacy.json, trained on rendered "
               "glyphs only (its training command, fonts and pose priors, with the priors' "
               "origin, are listed there from its metadata)",
    "inception": "the FID Inception-v3 network (pytorch-fid's ImageNet weights, converted)",
}
"""One sentence on each embedding's origin, for the privacy report."""


def _embedding_description(name: str, checkpoint: str) -> dict:
    """What the report says about the embedding ``name``: its origin and any checkpoint's."""
    described = {"description": EMBEDDING_DESCRIPTIONS[name], "name": name}
    if name == "encoder":
        from pe_jax import checkpoints
        from pe_jax.models import encoder

        path = checkpoint or encoder.SHIPPED
        metadata = checkpoints.load_metadata(path)
        described.update(checkpoint=str(path), command=metadata.get("command"),
                         training_data={key: metadata.get(key)
                                        for key in ("data", "fonts", "priors")})
    elif name == "inception":
        described["checkpoint"] = checkpoint
    return described


def _report_inputs(config: ml_collections.ConfigDict, source: "ImageSource",
                   private_rows: int, reference: "LabelledImages", pe_config: "PEConfig",
                   generator_description: dict) -> tuple[dict, dict]:
    """The report's ``private_data`` (the rows the guarantee covers) and ``public`` entries.

    Public is everything the run used without noise: the generator (with its fonts, pose
    priors and checkpoints and where they came from), the embedding, the held-out reference
    rows with the split that picks them, and the settings. Metrics on the held-out rows are
    outside the guarantee.
    """
    from pe_jax.configs import build
    from pe_jax.data import HELDOUT_RULE, HELDOUT_SALT

    rows = private_rows + len(reference.labels)
    described = source.describe()
    digits = config.data.source == "sklearn_digits"
    what = build.data_set_phrase(config.data, described)
    private_data = {
        "description": f"the {private_rows:,} of the {rows:,} rows of {what} that the "
                       "fixed held-out split leaves; only they vote, and the guarantee covers "
                       "only them",
        "data": config.data.source, "source": described, "rows": private_rows,
        "rows_in_data_set": rows}
    tuned = ("the glyph priors, threshold and degree schedule were tuned on them and "
             if digits else "")
    heldout = {
        "description": f"the {len(reference.labels):,} real rows that the fixed split holds "
                       f"out: they never vote; {tuned}the quality metrics are measured on them, "
                       "without noise, so the metrics and anything learnt from these rows lie "
                       "outside the guarantee",
        "rows": len(reference.labels), "fraction": config.data.heldout,
        "salt": HELDOUT_SALT, "rule": HELDOUT_RULE, "metrics": config.metrics.names}
    if heldout["metrics"]:
        heldout["metrics_embedding"] = _embedding_description(config.metrics.embedding,
                                                              config.metrics.checkpoint)
    public = {
        "generator": generator_description,
        "embedding": _embedding_description(config.embedding.name, config.embedding.checkpoint),
        "heldout_reference": heldout,
        "samples_per_class": {
            "description": "the synthetic population size of each class, set in the config",
            "values": list(pe_config.samples_per_class)},
        "settings": {
            "description": "every setting of the run, in config.json; the generator, "
                           "threshold and degree schedule of the shipped digits configs were "
                           "chosen on held-out digits only (experiments/sweep_pe_settings.py, "
                           "experiments/sweep_quality.py)",
            "threshold": pe_config.threshold_value, "degrees": list(pe_config.degrees)},
    }
    return private_data, public
