"""The digits table of RESULTS.md: the embedded default at several budgets, over seeds.

    nice -n 5 .venv/bin/python experiments/results_digits.py --out /tmp/results_digits

runs ``pe-jax run`` (the embedded default, ``pe_jax/configs/digits.py``) once per seed and per
epsilon in ``--epsilons`` (``inf``: ``--set privacy.non_private=true``), each into its own
folder under ``--out``; a run whose folder already holds ``samples.npz`` and no
``INCOMPLETE`` marker is not run again, so an interrupted table continues where it stopped.
The noise comes from the OS CSPRNG (every private run is a real DP release); ``seed`` sets the
run's JAX key, which draws the prior's samples and variations.

It prints one markdown table: per setting the mean and sample standard deviation over the
seeds of the final iteration's downstream accuracy, FID (shipped encoder's space), precision
and recall on the 462 held-out digits, read from each run's ``metrics/metrics.csv``. Two
baselines come with it: "prior alone" is iteration 0 of the same runs (the initial
population, drawn from the public prior before any private data; it depends on the seed only,
so one value per seed), and
"real -> real" is the same downstream classifier trained on the 1,335 private rows
themselves (not private: an upper reference).
"""

import argparse
import csv
import math
import pathlib
import statistics
import subprocess
import sys

from pe_jax.commands import completed
from pe_jax.data.digits import TUNING_HELDOUT, sklearn_digits_source
from pe_jax.metrics.downstream import downstream_accuracy

COLUMNS = ("accuracy", "fid", "precision", "recall")


def run_folder(out: pathlib.Path, epsilon: float, seed: int) -> pathlib.Path:
    name = "non_private" if math.isinf(epsilon) else f"eps{epsilon:g}"
    return out / f"{name}_seed{seed}"


def budget_override(epsilon: float) -> str:
    """The ``--set`` value of a run's budget: ``inf`` is a non-private run (clean counts)."""
    return "privacy.non_private=true" if math.isinf(epsilon) else f"privacy.epsilon={epsilon:g}"


def command(folder: pathlib.Path, epsilon: float, seed: int) -> list[str]:
    """The ``pe-jax run`` command of one cell."""
    return ["pe-jax", "run", "--out", str(folder), "--set", f"seed={seed}",
            "--set", budget_override(epsilon), "--quiet"]


def metric_rows(folder: pathlib.Path) -> tuple[dict, dict]:
    """The first (iteration 0) and last rows of a run's metrics as floats."""
    with open(folder / "metrics" / "metrics.csv") as file:
        rows = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(file)]
    if rows[0]["iteration"] != 0:
        raise RuntimeError(f"{folder}: metrics.csv has no iteration-0 row")
    return rows[0], rows[-1]


def summary(values: list[float]) -> str:
    """``mean +- sd`` (sample standard deviation; just the value for one run)."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


def real_to_real() -> float:
    """Downstream accuracy of the classifier trained on the private rows themselves."""
    private, heldout = (part.load() for part in sklearn_digits_source().split(TUNING_HELDOUT))
    return downstream_accuracy(private.images, private.labels, heldout.images, heldout.labels,
                               num_classes=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="folder of the runs")
    parser.add_argument("--epsilons", default="1,4,10,inf",
                        help="comma-separated budgets; inf = non-private")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated run seeds")
    args = parser.parse_args()
    epsilons = [float(e) for e in args.epsilons.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    pe_jax = pathlib.Path(sys.executable).with_name("pe-jax")

    first, last = {}, {}
    for epsilon in epsilons:
        for seed in seeds:
            folder = run_folder(args.out, epsilon, seed)
            if not completed(folder):
                argv = command(folder, epsilon, seed)
                print("$", " ".join(argv), flush=True)
                subprocess.run([str(pe_jax), *argv[1:]], check=True)
            first[epsilon, seed], last[epsilon, seed] = metric_rows(folder)

    print(f"\n| setting | {' | '.join(COLUMNS)} | runs |\n|---|{'---|' * len(COLUMNS)}---|")
    prior = [first[epsilons[0], seed] for seed in seeds]
    print(f"| prior alone (iteration 0) | "
          f"{' | '.join(summary([row[c] for row in prior]) for c in COLUMNS)} | {len(prior)} |")
    for epsilon in epsilons:
        rows = [last[epsilon, seed] for seed in seeds]
        label = "non-private" if math.isinf(epsilon) else f"epsilon {epsilon:g}"
        print(f"| {label} | {' | '.join(summary([row[c] for row in rows]) for c in COLUMNS)} "
              f"| {len(rows)} |")
    print(f"| real -> real (accuracy only) | {real_to_real():.3f} | | | | 1 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
