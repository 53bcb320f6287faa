"""``pe-jax run``: Private Evolution on a config's private data, with its outputs on disk.

``pe-jax run [--config FILE] [--set key=value ...] [--out DIR] [--ledger FILE]`` writes the
synthetic samples (``samples.npz``, PNG grids) and the privacy report (``privacy.json``,
``privacy.txt``) to a new output folder. Without ``--config`` it runs the embedded default,
``pe_jax/configs/digits.py``. With ``--ledger`` the run's releases are appended to a ledger
file shared by runs on the same private data, so that repeated runs compose.
"""

import argparse
import math
import pathlib
from typing import TYPE_CHECKING

import ml_collections

from pe_jax.commands import add_config_arguments, output_dir
from pe_jax.configs import DEFAULT_CONFIG, load_config
from pe_jax.data.digits import TUNING_HELDOUT
from pe_jax.data.types import LabelledImages

if TYPE_CHECKING:
    from pe_jax.evolve import PEConfig
    from pe_jax.privacy import PrivacyLedger

NAME = "run"
HELP = "run Private Evolution and write its outputs"
DATASETS = ("sklearn_digits",)
# The run's neighbouring relation: data sets that differ by one private row added or removed.
ADJACENCY = "add_remove"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, DEFAULT_CONFIG, "the embedded digits run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--ledger", type=pathlib.Path, default=None, metavar="FILE",
        help="a privacy ledger file (JSON) shared by all runs on the same private data: this "
             "run's releases are appended to it, checked against its budget before any private "
             "data is read, and the file is rewritten (atomically) after every release, so "
             "repeated runs compose. A missing FILE is created; an existing one must have this "
             "run's delta. Without --ledger every run starts a fresh ledger and reruns are not "
             "composed")
    parser.add_argument(
        "--ledger-budget", type=float, default=None, metavar="EPSILON",
        help="the total epsilon budget of a NEW --ledger file, over all runs recorded in it "
             "(default: no limit; the composed total is still reported); an existing file "
             "keeps the budget it was created with. Each run also stays within its own "
             "config epsilon")


def execute(args: argparse.Namespace) -> int:
    from pe_jax import reporting

    config = load_config(args.config, args.set)
    out = output_dir(args.out, config.name)
    report = run_command(config, out, progress=not args.quiet, ledger_path=args.ledger,
                         ledger_budget=args.ledger_budget)
    print(f"wrote {out}: {reporting.guarantee(report)}, T = {report['iterations']}, "
          f"sigma = {report['noise_multiplier'][0]:.4g}")
    composed = report["composed"]
    if composed["ledger_file"] is not None:
        print(f"ledger {composed['ledger_file']}: {composed['releases']} releases in all, "
              f"{reporting.composed_total(report)}")
    return 0


def run_command(config: ml_collections.ConfigDict, out: pathlib.Path, progress: bool,
                ledger_path: pathlib.Path | None = None,
                ledger_budget: float | None = None) -> dict:
    """Runs PE as the config says and writes its outputs; returns the privacy report.

    ``ledger_path`` / ``ledger_budget``: see ``--ledger`` and ``--ledger-budget``. The ledger
    is opened and the whole run checked against its budget before any private data is read.
    """
    import jax

    from pe_jax import embeddings, evolve, privacy, reporting
    from pe_jax.apis.factory import make_generator
    from pe_jax.data import load_sklearn_digits
    from pe_jax.metrics.callbacks import make_callbacks

    if config.data not in DATASETS:
        raise ValueError(f"data must be one of {DATASETS}; got {config.data!r}")
    sigma = privacy.noise_multiplier(config.epsilon, config.delta, config.iterations, k=config.k)
    reporting.check_output_dir(out)  # before the ledger file: a refused --out creates none
    ledger = _ledger(config, ledger_path, ledger_budget)
    run_start = len(ledger)
    ledger.check(privacy.release_event(noise_multiplier=sigma, k=config.k),
                 times=config.iterations)
    private, reference = _private_and_reference(load_sklearn_digits(), config)
    pe_config = evolve.PEConfig(
        iterations=config.iterations,
        noise_multiplier=sigma,
        samples_per_class=(config.samples_per_class,) * private.num_classes,
        degrees=evolve.degree_schedule(config.degree_start, config.degree_end,
                                       config.iterations, config.degree_schedule),
        threshold=config.threshold,
        k=config.k,
        metric=config.metric,
        selection=config.selection,
        variation_folds=config.variation_folds,
        keep_selected=config.keep_selected,
        lookahead=config.lookahead,
    )
    generator, generator_description = make_generator(config, private.class_names,
                                                      private.images.shape[1])
    embedder = embeddings.from_config(config)
    out = reporting.prepare_output_dir(out)
    (out / "config.json").write_text(config.to_json(indent=2) + "\n")
    (out / "iterations").mkdir()

    def save_grid(result: evolve.IterationResult) -> None:
        reporting.save_image_grid(out / "iterations" / f"iter_{result.iteration:03d}.png",
                                  generator.images(result.samples), result.labels,
                                  private.num_classes)

    metric_callbacks = make_callbacks(
        config, out, generator=generator, num_classes=private.num_classes,
        reference_images=reference.images, reference_labels=reference.labels)
    result = evolve.run(
        jax.random.key(config.seed), pe_config, generator=generator, embedder=embedder,
        private_images=private.images, private_labels=private.labels, ledger=ledger,
        callbacks=[save_grid, *metric_callbacks], progress=progress)
    images = generator.images(result.samples)
    reporting.save_samples(out / "samples.npz", images, result.labels, private.class_names)
    reporting.save_image_grid(out / "samples.png", images, result.labels, private.num_classes)
    private_data, public = _report_inputs(config, private, reference, pe_config,
                                          generator_description)
    non_private_outputs = {"metrics/": (
        f"quality metrics ({config.metrics}) measured without noise on the "
        f"{len(reference.labels)} held-out real rows: statistics of those rows, which the "
        "guarantee does not cover")} if config.get("metrics", "") else {}
    report = reporting.privacy_report(
        ledger, target_epsilon=config.epsilon, private_data=private_data, public=public,
        non_private_outputs=non_private_outputs, run_start=run_start)
    reporting.write_privacy_report(out, report)
    return report


def _ledger(config: ml_collections.ConfigDict, path: pathlib.Path | None,
            budget: float | None) -> "PrivacyLedger":
    """The run's ledger: the file ``path`` (``--ledger``), or a fresh one whose budget is the
    run's own epsilon."""
    from pe_jax import privacy

    if path is None:
        if budget is not None:
            raise ValueError("--ledger-budget sets the budget of a --ledger file; give --ledger "
                             "too, or leave it out")
        return privacy.PrivacyLedger(config.delta, adjacency=ADJACENCY,
                                     epsilon_budget=config.epsilon)
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise ValueError(f"--ledger-budget must be a finite epsilon > 0; got {budget!r}")
    return privacy.PrivacyLedger.open(path, delta=config.delta, adjacency=ADJACENCY,
                                      epsilon_budget=budget)


def _private_and_reference(data: LabelledImages, config: ml_collections.ConfigDict
                           ) -> tuple[LabelledImages, LabelledImages]:
    """The private set, and the held-out real reference set of the metrics.

    ``data.split(config.heldout)`` sets aside the rows that a hash of their index and a fixed
    salt picks (``pe_jax.data.heldout_mask``): part of the data set's definition, the same for
    every seed, and no row moves when rows are appended. They never vote; quality metrics are
    measured against them only, because metrics are not noised and must not be computed on the
    private set. The fraction must be at least ``TUNING_HELDOUT``: a larger one holds out a
    superset of its rows, which the default's public settings were tuned on.
    """
    heldout = config.get("heldout", TUNING_HELDOUT)
    if not TUNING_HELDOUT <= heldout < 1:
        raise ValueError(
            f"heldout must be a fraction in [{TUNING_HELDOUT}, 1): the digits that "
            f"split({TUNING_HELDOUT}) holds out are public, since the shipped glyph priors, "
            "encoder and diffusion prior and the default threshold and degree schedule were "
            f"tuned on them, so they can never be private; got {heldout!r}")
    return data.split(heldout)


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


def _embedding_description(name: str, config: ml_collections.ConfigDict) -> dict:
    """What the report says about the embedding ``name``: its origin and any checkpoint's."""
    described = {"description": EMBEDDING_DESCRIPTIONS[name], "name": name}
    if name == "encoder":
        from pe_jax import checkpoints
        from pe_jax.models import encoder

        path = config.get("encoder_checkpoint") or encoder.SHIPPED
        metadata = checkpoints.load_metadata(path)
        described.update(checkpoint=str(path), command=metadata.get("command"),
                         training_data={key: metadata.get(key)
                                        for key in ("data", "fonts", "priors")})
    elif name == "inception":
        described["checkpoint"] = config.inception_weights
    return described


def _report_inputs(config: ml_collections.ConfigDict, private: LabelledImages,
                   reference: LabelledImages, pe_config: "PEConfig",
                   generator_description: dict) -> tuple[dict, dict]:
    """The report's ``private_data`` (the rows the guarantee covers) and ``public`` entries.

    Public is everything the run used without noise: the generator (with its fonts, pose
    priors and checkpoints and where they came from), the embedding, the held-out reference
    rows with the split that picks them, and the settings. Metrics on the held-out rows are
    outside the guarantee.
    """
    from pe_jax.data import HELDOUT_RULE, HELDOUT_SALT

    rows = len(private.labels) + len(reference.labels)
    private_data = {
        "description": f"the {len(private.labels):,} of the {rows:,} rows of scikit-learn's 8x8 "
                       "handwritten digits (sklearn.datasets.load_digits) that the fixed "
                       "held-out split leaves; only they vote, and the guarantee covers only "
                       "them",
        "data": config.data, "rows": len(private.labels), "rows_in_data_set": rows}
    heldout = {
        "description": f"the {len(reference.labels):,} real digits that the fixed split holds "
                       "out: they never vote; the glyph priors, threshold and degree schedule "
                       "were tuned on them and the quality metrics are measured on them, "
                       "without noise, so the metrics and anything learnt from these rows lie "
                       "outside the guarantee",
        "rows": len(reference.labels), "fraction": config.get("heldout", TUNING_HELDOUT),
        "salt": HELDOUT_SALT, "rule": HELDOUT_RULE, "metrics": config.get("metrics", "")}
    if heldout["metrics"]:
        heldout["metrics_embedding"] = _embedding_description(
            config.get("metrics_embedding", "encoder"), config)
    public = {
        "generator": generator_description,
        "embedding": _embedding_description(config.embedding, config),
        "heldout_reference": heldout,
        "samples_per_class": {
            "description": "the synthetic population size of each class, set in the config",
            "values": list(pe_config.samples_per_class)},
        "settings": {
            "description": "every setting of the run, in config.json; the threshold and "
                           "degree schedule of pe_jax/configs/digits.py were chosen on held-out "
                           "digits only (experiments/sweep_pe_settings.py)",
            "threshold": pe_config.threshold, "degrees": list(pe_config.degrees)},
    }
    return private_data, public
