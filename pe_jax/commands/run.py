"""``pe-jax run``: Private Evolution on a config's private data, with its outputs on disk.

``pe-jax run [--config FILE] [--set key=value ...] [--out DIR]`` writes the synthetic samples
(``samples.npz``, PNG grids) and the privacy report (``privacy.json``, ``privacy.txt``) to a
new output folder. Without ``--config`` it runs the embedded default,
``pe_jax/configs/digits.py``.
"""

import argparse
import pathlib

import ml_collections

from pe_jax.commands import add_config_arguments, output_dir
from pe_jax.configs import DEFAULT_CONFIG, load_config
from pe_jax.data.types import LabelledImages

NAME = "run"
HELP = "run Private Evolution and write its outputs"
DATASETS = ("sklearn_digits",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, DEFAULT_CONFIG, "the embedded digits run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def execute(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.set)
    out = output_dir(args.out, config.name)
    report = run_command(config, out, progress=not args.quiet)
    print(f"wrote {out}: ({report['epsilon']:.4g}, {report['delta']:.3g})-DP, "
          f"T = {report['iterations']}, sigma = {report['noise_multiplier'][0]:.4g}")
    return 0


def run_command(config: ml_collections.ConfigDict, out: pathlib.Path, progress: bool) -> dict:
    """Runs PE as the config says and writes its outputs; returns the privacy report."""
    import jax

    from pe_jax import embeddings, evolve, privacy, reporting
    from pe_jax.apis.factory import make_generator
    from pe_jax.data import load_sklearn_digits
    from pe_jax.metrics.callbacks import make_callbacks

    if config.data not in DATASETS:
        raise ValueError(f"data must be one of {DATASETS}; got {config.data!r}")
    private, reference = _private_and_reference(load_sklearn_digits(), config)
    sigma = privacy.noise_multiplier(config.epsilon, config.delta, config.iterations, k=config.k)
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
    ledger = privacy.PrivacyLedger(config.delta, epsilon_budget=config.epsilon)
    out = reporting.prepare_output_dir(out)
    (out / "config.json").write_text(config.to_json(indent=2) + "\n")
    (out / "iterations").mkdir()

    def save_grid(result: evolve.IterationResult) -> None:
        reporting.save_image_grid(out / "iterations" / f"iter_{result.iteration:03d}.png",
                                  generator.images(result.samples), result.labels,
                                  private.num_classes)

    metric_callbacks = make_callbacks(
        config, out, generator=generator, num_classes=private.num_classes,
        reference_images=None if reference is None else reference.images,
        reference_labels=None if reference is None else reference.labels)
    result = evolve.run(
        jax.random.key(config.seed), pe_config, generator=generator, embedder=embedder,
        private_images=private.images, private_labels=private.labels, ledger=ledger,
        callbacks=[save_grid, *metric_callbacks], progress=progress)
    images = generator.images(result.samples)
    reporting.save_samples(out / "samples.npz", images, result.labels, private.class_names)
    reporting.save_image_grid(out / "samples.png", images, result.labels, private.num_classes)
    public = {
        "samples_per_class": list(pe_config.samples_per_class),
        "generator": generator_description,
        "embedding": config.embedding,
        "configuration": "all settings in config.json",
    }
    report = reporting.privacy_report(ledger, target_epsilon=config.epsilon, public=public)
    reporting.write_privacy_report(out, report)
    return report


def _private_and_reference(data: LabelledImages, config: ml_collections.ConfigDict
                           ) -> tuple[LabelledImages, LabelledImages | None]:
    """The private set, and the held-out real reference set of the metrics (or None).

    ``config.heldout`` (a fraction, 0 for none) of the real data is set aside before PE starts
    and never votes; quality metrics are measured against it only, because metrics are not
    noised and must not be computed on the private set.
    """
    heldout = config.get("heldout", 0.0)
    if not heldout:
        if config.get("metrics", ""):
            raise ValueError("metrics need a held-out real reference set: set heldout to a "
                             f"fraction in (0, 1); got heldout={heldout!r}")
        return data, None
    if not 0 < heldout < 1:
        raise ValueError(f"heldout must be 0 or a fraction in (0, 1); got {heldout!r}")
    return data.split(heldout, seed=config.seed)
