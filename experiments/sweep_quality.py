"""Measures PE's quality levers on held-out digits only, one at a time and combined.

    nice -n 10 .venv/bin/python experiments/sweep_quality.py --generator glyphs \\
        --epsilons 1,10,inf --levers base,thr1,top,random20,small25,t5 --repeats 1

The harness is ``sweep_pe_settings.Harness``: the held-out digits (never the private rows of
the default run) are split into two fixed halves, PE votes with one half (each row
``REPEATS`` times, about the real private set's size) and is measured on the other, then the
halves swap; ``--repeats`` runs per fold (key r, seeded noise r, the same for every lever).
A row is the mean downstream accuracy (``pe_jax.metrics.downstream``, the CNN trained on the
final samples) with its standard error over the runs, the mean FID in the shipped encoder's
space, and each run's accuracy (fold 1 first; the folds' test halves differ, so levers are
best compared run by run).

Everything not named by a lever is the generator's config
(``pe_jax/configs/digits_glyphs.py`` for ``glyphs``, ``digits.py`` for ``diffusion``) with
``threshold_sigmas = 0``, the base this sweep chose ``thr1`` against: T = 10, 100 samples per
class, threshold 0, ``sample`` selection, its geometric degree schedule. ``inf`` in ``--epsilons`` is the non-private baseline (clean histograms). The noise
multiplier is calibrated for each lever's own T (the T releases of its ledger). Levers:

* ``base``: the default config;
* ``prior``: the initial population alone (no PE, no private data);
* ``thr1``/``thr2``: threshold ``1``/``2`` sigma (``threshold_sigmas``);
* ``top``: ``keep_selected`` with ``keep="top"`` (50 kept top-voted + 50 variations);
* ``random20``: ``random_fraction=0.2`` (20 fresh random samples per class per generation);
* ``small25``: 25 candidates per class (4x the votes per candidate), spread after the run to
  100 per class by 3 variations of each at the final degree (``population.spread``);
* ``t5``: T = 5 (less noise per release);
* ``combo`` and any ``a+b+...``: the named levers together.
"""

import argparse
import functools
import sys
import time

import numpy as np
from sweep_pe_settings import Harness, standard_error

from pe_jax import evolve, population, privacy
from pe_jax.apis.factory import make_generator
from pe_jax.configs import load_config

CONFIGS = {"glyphs": "pe_jax/configs/digits_glyphs.py", "diffusion": "pe_jax/configs/digits.py"}
BASE = ["pe.threshold_sigmas=0"]
"""The sweep's base: the configs as they were before it chose ``thr1`` for the default."""

LEVERS = {
    "base": {},
    "thr1": {"threshold_sigmas": 1.0},
    "thr2": {"threshold_sigmas": 2.0},
    "top": {"keep_selected": True, "keep": "top"},
    "random20": {"random_fraction": 0.2},
    "small25": {"samples_per_class": 25, "spread": 3},
    "t5": {"iterations": 5},
}
"""Each lever's changes to the default: PEConfig fields, plus ``spread`` (variations of each
final sample added after the run)."""


def settings_of(name: str) -> dict:
    """The merged changes of ``name`` (levers joined by ``+``)."""
    merged = {}
    for lever in name.split("+"):
        if lever not in LEVERS:
            raise ValueError(f"--levers: {lever!r} is not one of {sorted(LEVERS)} or 'prior'")
        merged.update(LEVERS[lever])
    return merged


def pe_config_of(config, changes: dict, epsilon: float, classes: int) -> evolve.PEConfig:
    """The PEConfig of one lever at ``epsilon`` (``inf``: non-private)."""
    from pe_jax.configs import build

    pe = config.pe.copy_and_resolve_references()
    pe.update({key: value for key, value in changes.items() if key != "spread"})
    non_private = bool(np.isinf(epsilon))
    sigma = 0.0 if non_private else privacy.noise_multiplier(epsilon, config.privacy.delta,
                                                             pe.iterations, k=pe.k)
    return build.pe_config(pe, noise_multiplier=sigma, non_private=non_private,
                           num_classes=classes)


def prior_alone(harness: Harness, generator, per_class: int, repeats: int
                ) -> tuple[list[float], list[float]]:
    """The initial population measured like a PE result: no vote, no privacy cost."""
    import jax

    from pe_jax import step
    from pe_jax.metrics import downstream, fid

    layout = population.PopulationLayout((per_class,) * harness.held_out.num_classes)
    accuracy, distance = [], []
    for (_, test), repeat in [(halves, r) for halves in (harness.halves, harness.halves[::-1])
                              for r in range(repeats)]:
        state = step.initial_state(jax.random.key(repeat), generator, layout, conditional=True)
        images = np.asarray(generator.images(state.samples))
        accuracy.append(downstream.downstream_accuracy(images, layout.labels, test.images,
                                                       test.labels, test.num_classes))
        distance.append(fid.fid(np.asarray(harness.encoder(images)),
                                np.asarray(harness.encoder(test.images))))
    return accuracy, distance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", choices=sorted(CONFIGS), default="glyphs")
    parser.add_argument("--epsilons", default="1,10,inf", help="comma-separated; inf: "
                        "non-private")
    parser.add_argument("--levers", default="base,thr1,top,random20,small25,t5",
                        help="comma-separated lever names, or a+b for levers together")
    parser.add_argument("--repeats", type=int, default=1, help="runs per fold and setting")
    parser.add_argument("--first-repeat", type=int, default=0,
                        help="key and noise seed of the first repeat (more runs of a setting)")
    args = parser.parse_args()

    config = load_config(CONFIGS[args.generator], BASE)
    harness = Harness.create()
    classes = harness.held_out.num_classes
    generator, _ = make_generator(config.generator, harness.held_out.class_names,
                                  harness.held_out.images.shape[1:])
    print("command: nice -n 10 .venv/bin/python " + " ".join(sys.argv), flush=True)
    print(f"{'generator':>9s} {'epsilon':>7s} {'lever':>22s} {'sigma':>6s} {'accuracy':>15s} "
          f"{'fid':>6s} {'runs':>4s} {'seconds':>7s}  per-run accuracy", flush=True)
    for epsilon in (float(e) for e in args.epsilons.split(",")):
        for name in args.levers.split(","):
            clock = time.perf_counter()
            if name == "prior":
                sigma = float("nan")
                accuracy, distance = prior_alone(harness, generator, config.pe.samples_per_class,
                                                 args.repeats)
            else:
                changes = settings_of(name)
                pe_config = pe_config_of(config, changes, epsilon, classes)
                sigma = pe_config.noise_multiplier
                finish = (functools.partial(population.spread, copies=changes["spread"],
                                            degree=pe_config.degrees[-1])
                          if changes.get("spread") else None)
                accuracy, distance = harness.evaluate(pe_config, generator, args.repeats,
                                                      config.privacy.delta, finish,
                                                      args.first_repeat)
            print(f"{args.generator:>9s} {epsilon:7g} {name:>22s} {sigma:6.3g} "
                  f"{np.mean(accuracy):9.3f} +- {standard_error(accuracy):.3f} "
                  f"{np.mean(distance):6.2f} {len(accuracy):4d} "
                  f"{time.perf_counter() - clock:7.0f}  "
                  + ",".join(f"{a:.3f}" for a in accuracy), flush=True)


if __name__ == "__main__":
    main()
