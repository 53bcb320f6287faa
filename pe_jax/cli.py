"""The ``pe-jax`` command.

``pe-jax run [--config FILE] [--set key=value ...] [--out DIR]`` runs PE on the config's
private data and writes the synthetic samples (``samples.npz``, PNG grids) and the privacy
report (``privacy.json``, ``privacy.txt``) to a new output folder. Without ``--config`` it runs
the embedded default, ``pe_jax/configs/digits.py``.
"""

import argparse
import datetime
import importlib.util
import json
import pathlib
import sys
from collections.abc import Sequence

import ml_collections

DEFAULT_CONFIG = pathlib.Path(__file__).parent / "configs" / "digits.py"
DATASETS = ("sklearn_digits",)
GENERATORS = ("glyphs",)


def load_config(path: str | pathlib.Path, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Runs ``get_config()`` from a config file, then applies ``key=value`` overrides."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"--config must be an existing .py file with get_config(); got {str(path)!r}")
    spec = importlib.util.spec_from_file_location(f"pe_jax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep or name not in config:
            raise ValueError(f"--set takes key=value with a key of the config "
                             f"({', '.join(sorted(config.keys()))}); got {item!r}")
        current = config[name]
        config[name] = type(current)(json.loads(text)) if not isinstance(current, str) else text
    return config


def run_command(config: ml_collections.ConfigDict, out: pathlib.Path, progress: bool) -> dict:
    """Runs PE as the config says and writes its outputs; returns the privacy report."""
    import jax

    from pe_jax import embeddings, evolve, privacy, reporting
    from pe_jax.apis.glyphs import GlyphGenerator
    from pe_jax.data import load_sklearn_digits

    if config.data not in DATASETS:
        raise ValueError(f"data must be one of {DATASETS}; got {config.data!r}")
    if config.generator not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}; got {config.generator!r}")
    private = load_sklearn_digits()
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
    generator = GlyphGenerator(characters="".join(private.class_names),
                               resolution=private.images.shape[1])
    ledger = privacy.PrivacyLedger(config.delta, epsilon_budget=config.epsilon)
    out = reporting.prepare_output_dir(out)
    (out / "config.json").write_text(config.to_json(indent=2) + "\n")
    (out / "iterations").mkdir()

    def save_grid(result: evolve.IterationResult) -> None:
        reporting.save_image_grid(out / "iterations" / f"iter_{result.iteration:03d}.png",
                                  generator.images(result.samples), result.labels,
                                  private.num_classes)

    result = evolve.run(
        jax.random.key(config.seed), pe_config, generator=generator,
        embedder=embeddings.make_embedder(config.embedding),
        private_images=private.images, private_labels=private.labels, ledger=ledger,
        callbacks=[save_grid], progress=progress)
    images = generator.images(result.samples)
    reporting.save_samples(out / "samples.npz", images, result.labels, private.class_names)
    reporting.save_image_grid(out / "samples.png", images, result.labels, private.num_classes)
    public = {
        "samples_per_class": list(pe_config.samples_per_class),
        "generator": {"name": config.generator, "fonts": list(generator.fonts)},
        "embedding": config.embedding,
        "configuration": "all settings in config.json",
    }
    report = reporting.privacy_report(ledger, target_epsilon=config.epsilon, public=public)
    reporting.write_privacy_report(out, report)
    return report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pe-jax", description="Differentially private synthetic data by Private Evolution.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run Private Evolution and write its outputs")
    run.add_argument("--config", default=str(DEFAULT_CONFIG),
                     help="a .py file with get_config() (default: the embedded digits run)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override one config value; may be repeated")
    run.add_argument("--out", default=None,
                     help="a new output folder (default: outputs/<name>-<UTC time>)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config, args.set)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        out = pathlib.Path(args.out or f"outputs/{config.name}-{stamp}")
        report = run_command(config, out, progress=not args.quiet)
    except ValueError as error:
        print(f"pe-jax: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}: ({report['epsilon']:.4g}, {report['delta']:.3g})-DP, "
          f"T = {report['iterations']}, sigma = {report['noise_multiplier'][0]:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
