"""Fashion-MNIST with class-disjoint public data: PE's downstream accuracy on the real test set.

The protocol (DPImageBench-style, with the public data declared: there is no ImageNet here):

1. split: the 60,000 real training rows (Debian's ``dataset-fashion-mnist``) are split by a
   fixed hash of the row index (``pe_jax.data.heldout_mask``, salt ``SPLIT_SALT``, fraction
   0.5; never by a seed) into a PUBLIC half and a PRIVATE half. The 10,000 test rows are only
   used to measure accuracy, once per trained classifier.
2. priors: prior A, an unconditional diffusion UNet, is trained on the public rows of classes
   0-4; prior B on the public rows of classes 5-9 (``pe_jax.commands.train_prior.fit_and_save``,
   the code of ``pe-jax train-prior``).
3. pe: A serves PE on the private rows of classes 5-9, B on those of 0-4, each run through
   ``pe-jax run`` (``data.source=npz`` on the half's private rows, ``generator.prior``), with
   its own ledger. The two runs see disjoint private rows, so together they are
   (epsilon, delta)-DP on the private half by parallel composition. The priors are
   unconditional, so every class's ``random`` draws from the same model; the votes alone
   steer each class's population.
4. union + classifier: the two final synthetic sets, relabelled to the 10 original classes,
   train ``pe_jax.metrics.downstream``'s ConvNet (one fixed ``RECIPE``); its accuracy on the
   real 10,000 test rows is reported. Baselines with the same recipe: real -> real (the private
   half's real rows) and prior alone (each prior's ``random`` samples, the PE population of
   iteration 0, labelled as PE labels them: no private data).

Also an FID against the test set, in the feature space of a ConvNet (the same recipe) trained
on the public half only: no Inception weights exist here, so it is NOT Inception FID and not
comparable to published FIDs.

What it is not: not DPImageBench's public data (ImageNet), not its 60,000 private rows (the
private half has about 30,000), not a synthetic set the size of the training set (here 2,000
images), one seed per run (``--seed`` for more), CPU-sized models and PE settings (below),
chosen before any run and not tuned on the private rows. ``noise_seed`` is -1 (OS
randomness), so the runs are private.

Run (each stage skips work whose outputs exist, so a stopped run continues; about 1.5 hours
on 2 busy CPU cores)::

    nice -n 5 .venv/bin/python experiments/fashion_disjoint.py --out /tmp/fmnist \\
        --epsilons 1 4 10

``--epsilons inf`` runs PE non-private (clean counts: NOT DP, an upper reference).
``--method dpsgd`` makes each half's synthetic set by DP-SGD fine-tuning of the same prior on
the same private rows (``pe-jax dp-finetune``, settings ``DPSGD_SETTINGS``; the unconditional
prior gets label embeddings that start at zero), scored the same way: issue 16's baseline.
``--stages`` and ``--halves`` run parts of it (e.g. ``--stages priors``, then ``--stages pe
--halves A`` and ``--halves B`` side by side, then ``--stages baselines pe`` to score).
``--shared-prior DIR`` has one checkpoint serve both halves in place of A and B (the issue's
second row: a prior trained on rendered glyphs only, by ``pe-jax train-prior``); its runs go to
folders suffixed with the checkpoint's run folder name.
Results are in ``experiments/RESULTS.md``.

A JSON line of results is printed per epsilon and per baseline, and every ``pe-jax run``
command is printed before it runs. ``--tiny`` runs the whole pipeline on a few rows with
tiny settings (a smoke test, minutes).
"""

import argparse
import json
import math
import pathlib
import resource
import shlex
import subprocess
import sys
import time

import numpy as np
from results_digits import budget_override

SPLIT_SALT = "fashion_disjoint_public"
"""The salt of the public/private hash split (rows ``heldout_mask`` holds out are public)."""

HALVES = {"A": (range(0, 5), range(5, 10)), "B": (range(5, 10), range(0, 5))}
"""Prior name -> (the classes of its public training rows, the private classes it serves)."""

PRIOR = {"resolution": 28, "channels": 1, "conditional": False, "base_width": 16,
         "width_multipliers": (1, 2), "blocks_per_level": 1, "attention_resolutions": (),
         "steps": 3000, "batch_size": 32, "learning_rate": 2e-3, "warmup_steps": 200,
         "label_dropout": 0.0, "checkpoint_every": 250, "log_every": 50, "sample_every": 10**9,
         "sample_steps": 25}
"""The priors' settings over ``pe_jax/configs/prior_digits8.py`` (sized for 2 CPU cores)."""

PE_SETTINGS = {"pe.samples_per_class": 200, "pe.iterations": 8, "pe.threshold_sigmas": 1.0,
               "generator.steps": 20, "data.heldout": 0.02, "metrics.names": ""}
"""``--set`` overrides of ``pe_jax/configs/fashion_mnist.py`` for each PE run (CPU-sized).
``data.heldout``: the 2 % of each half's private rows the run sets aside; metrics are off, so
they are unused."""

DPSGD_SETTINGS = {"samples_per_class": 200, "sample_steps": 20, "data.heldout": 0.02,
                  "metrics": "", "dpsgd.steps": 150, "dpsgd.batch_size": 128,
                  "dpsgd.learning_rate": 1e-3, "dpsgd.checkpoint_every": 25}
"""``--method dpsgd``: ``--set`` overrides of ``pe_jax/configs/dp_finetune_digits.py`` for
each DP-SGD fine-tune of a prior on its half. The same private rows as PE (same data file and
held-out fraction), the same samples per class and DDIM steps; CPU-sized training (150 steps
of expected batch 128), chosen before any run and not tuned."""

RECIPE = {"steps": 2000, "batch_size": 64}
"""The downstream ConvNet's recipe (``pe_jax.metrics.downstream.Recipe``), the same for all."""

TINY = {"rows": 600, "prior": {"steps": 4, "checkpoint_every": 2, "log_every": 2},
        "pe": {"pe.samples_per_class": 4, "pe.iterations": 2, "generator.steps": 2,
               "data.heldout": 0.1}, "recipe": {"steps": 10},
        "dpsgd": {"samples_per_class": 4, "sample_steps": 2, "data.heldout": 0.1,
                  "dpsgd.steps": 4, "dpsgd.batch_size": 32, "dpsgd.checkpoint_every": 2}}
"""``--tiny``: a smoke test of every stage."""


def log(line: str) -> None:
    print(line, flush=True)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def load_split(out: pathlib.Path, rows: int | None) -> dict[str, np.ndarray]:
    """The split, written once to ``out/data/split.npz``: the public and private rows and the
    test set (uint8 images)."""
    from pe_jax.data import fashion_mnist_debian

    path = out / "data" / "split.npz"
    if not path.exists():
        train, test = fashion_mnist_debian("train"), fashion_mnist_debian("test")
        if rows:
            train = train.subset(np.arange(rows))
        private, public = (part.load() for part in train.split(0.5, SPLIT_SALT))
        path.parent.mkdir(parents=True, exist_ok=True)
        test = test.load()
        np.savez(path, public_images=to_uint8(public.images), public_labels=public.labels,
                 private_images=to_uint8(private.images), private_labels=private.labels,
                 test_images=to_uint8(test.images), test_labels=test.labels,
                 class_names=np.asarray(train.class_names, np.str_))
        log(f"split: {len(public.labels)} public rows, {len(private.labels)} private rows "
            f"-> {path}")
    with np.load(path) as split:
        return dict(split)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] images of 8-bit data back to their bytes (exact)."""
    return np.rint(np.asarray(images) * 255).astype(np.uint8)


def to_unit(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, np.float32) / 255.0


def write_private_parts(out: pathlib.Path, split: dict) -> dict[str, pathlib.Path]:
    """Each prior's private part as an npz (labels 0-4 within the part)."""
    paths = {}
    for name, (_, served) in HALVES.items():
        path = paths[name] = out / "data" / f"private_{name}.npz"
        if path.exists():
            continue
        rows = np.isin(split["private_labels"], list(served))
        np.savez(path, images=split["private_images"][rows],
                 labels=split["private_labels"][rows] - served.start,
                 class_names=split["class_names"][list(served)])
        log(f"private part {name}: {rows.sum()} rows of classes {list(served)} -> {path}")
    return paths


def train_priors(out: pathlib.Path, split: dict, prior: dict, halves: list[str]
                 ) -> dict[str, pathlib.Path]:
    """Trains (or continues) these halves' priors on their public rows; returns the
    checkpoint folders."""
    import ml_collections

    from pe_jax import reporting
    from pe_jax.commands.train_prior import CHECKPOINT_DIR, fit_and_save
    from pe_jax.configs.prior_digits8 import get_config
    from pe_jax.training import public_data

    folders = {}
    for name in halves:
        classes, folder = HALVES[name][0], out / f"prior_{name}"
        folders[name] = folder / CHECKPOINT_DIR
        if folders[name].exists():
            continue
        config = get_config()
        config.update(prior)
        config.name = f"fashion_prior_{name}"
        del config.characters, config.data_size  # glyph settings
        resume = folder.exists()
        if not resume:
            reporting.prepare_output_dir(folder)
            (folder / "grids").mkdir()
            (folder / "config.json").write_text(config.to_json(indent=2) + "\n")
        elif json.loads((folder / "config.json").read_text()) != json.loads(config.to_json()):
            raise ValueError(f"{folder} holds a prior trained with other settings; remove it "
                             "or pass another --out")
        rows = np.isin(split["public_labels"], list(classes))
        names = [str(n) for n in split["class_names"][list(classes)]]
        batches = public_data.array_batches(to_unit(split["public_images"][rows]),
                                            split["public_labels"][rows], config.batch_size)
        data = {"source": "Fashion-MNIST training rows, PUBLIC half (heldout_mask(60000, 0.5, "
                          f"{SPLIT_SALT!r}) holds them), classes {names}",
                "rows": int(rows.sum()), "classes": list(classes), "class_names": names}
        log(f"prior {name}: {rows.sum()} public rows of classes {list(classes)}, "
            f"{config.steps} steps -> {folder}")
        start, cpu = time.perf_counter(), cpu_seconds()
        summary = fit_and_save(ml_collections.ConfigDict(config), folder, batches,
                               class_names=names, data=data, resume=resume, progress=False,
                               command=shlex.join(sys.argv))
        log(json.dumps({"stage": f"prior_{name}", "final_loss": summary["final_loss"],
                        "wall_s": round(time.perf_counter() - start, 1),
                        "cpu_s": round(cpu_seconds() - cpu, 1)}))
    return folders


def method_run(out: pathlib.Path, method: str, epsilon: float, name: str,
               private: pathlib.Path, prior: pathlib.Path, settings: dict, seed: int,
               tag: str = "") -> pathlib.Path:
    """One ``pe-jax run`` (``method`` "pe") or ``pe-jax dp-finetune`` ("dpsgd") on a private
    part with ``settings``, continued with ``--resume`` if interrupted; ``tag`` names a shared
    prior in the folder's name. A DP-SGD run takes all its keys from the OS: its ``seed`` only
    names another run."""
    folder = out / f"{method}_eps{epsilon:g}_{name}{f'_seed{seed}' if seed else ''}{tag}"
    from pe_jax.commands import completed

    command_name = {"pe": "run", "dpsgd": "dp-finetune"}[method]
    if completed(folder):
        return folder
    if folder.exists():
        command = ["pe-jax", command_name, "--resume", str(folder), "--quiet"]
    else:
        command = ["pe-jax", command_name, "--out", str(folder), "--quiet"]
        if method == "pe":
            command += ["--config", "pe_jax/configs/fashion_mnist.py",
                        "--set", budget_override(epsilon)]
            overrides = {"generator.prior": str(prior), **({"seed": seed} if seed else {})}
        else:
            overrides = {"prior": str(prior), "epsilon": epsilon}
        overrides.update({"data.source": "npz", "data.path": str(private), **settings})
        for key, value in overrides.items():
            command += ["--set", f"{key}={value}"]
    log("$ " + shlex.join(command))
    start, cpu = time.perf_counter(), cpu_seconds()
    subprocess.run([str(pathlib.Path(sys.executable).parent / command[0]), *command[1:]],
                   check=True)
    (folder / "timing.json").write_text(json.dumps(
        {"wall_s": round(time.perf_counter() - start, 1),
         "cpu_s": round(cpu_seconds() - cpu, 1)}) + "\n")
    return folder


def ledger_epsilon(folder: pathlib.Path) -> float | None:
    """The epsilon the run's privacy report says it spent (None: a non-private run)."""
    report = json.loads((folder / "privacy.json").read_text())
    return report["epsilon"]


def union(parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Each part's images and part labels (0-4), relabelled to the 10 original classes."""
    images = [parts[name][0] for name in HALVES]
    labels = [parts[name][1] + HALVES[name][1].start for name in HALVES]
    return np.concatenate(images), np.concatenate(labels).astype(np.int32)


class Scorer:
    """Accuracy on the real test set of the recipe's ConvNet trained on a synthetic set, and
    FID against the test set in the feature space (``embed``) of a ConvNet trained on the
    PUBLIC half only: not Inception FID, so not comparable to published FIDs."""

    def __init__(self, split: dict, recipe: dict):
        from pe_jax.embeddings import BatchedEmbedder, model_features
        from pe_jax.metrics.downstream import Recipe, train_classifier

        self.split, self.recipe = split, Recipe(**recipe)
        self.test_images = to_unit(split["test_images"])
        features = train_classifier(to_unit(split["public_images"]), split["public_labels"],
                                    10, self.recipe)
        self._embed = BatchedEmbedder(*model_features(features, "embed"), batch_size=1000)
        self.test_features = np.asarray(self._embed(self.test_images))

    def __call__(self, images: np.ndarray, labels: np.ndarray) -> dict:
        from pe_jax.metrics.downstream import downstream_accuracy
        from pe_jax.metrics.fid import fid

        score = downstream_accuracy(images, labels, self.test_images, self.split["test_labels"],
                                    10, self.recipe)
        return {"accuracy": round(score, 4),
                "fid_public_convnet": round(fid(np.asarray(self._embed(images)),
                                                self.test_features), 2)}


def prior_alone(priors: dict[str, pathlib.Path], settings: dict) -> dict:
    """Each prior's ``random`` population as PE's iteration 0 draws it (same generator and
    size, labels in class blocks): the synthetic set without any private data."""
    import jax

    from pe_jax.apis.factory import make_generator
    from pe_jax.configs.sections import section

    per_class = settings["pe.samples_per_class"]
    parts = {}
    for name, folder in priors.items():
        generator, _ = make_generator(
            section("generator", name="diffusion", prior=str(folder),
                    steps=settings["generator.steps"]),
            [str(c) for c in HALVES[name][1]], (28, 28, 1))
        labels = np.repeat(np.arange(5, dtype=np.int32), per_class)
        samples = generator.random(jax.random.fold_in(jax.random.key(0), 0), len(labels))
        parts[name] = (np.asarray(generator.images(samples)), labels)
    return parts


def timed(row: dict, start: float, cpu: float) -> dict:
    return {**row, "wall_s": round(time.perf_counter() - start, 1),
            "cpu_s": round(cpu_seconds() - cpu, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/fmnist", help="folder of every output")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 10.0],
                        help="the runs' budgets; inf = non-private (PE only: clean counts, NOT DP)")
    parser.add_argument("--stages", nargs="+", default=["baselines", "pe"],
                        choices=["priors", "baselines", "pe"],
                        help="what to run after the split and the priors")
    parser.add_argument("--halves", nargs="+", default=list(HALVES), choices=list(HALVES),
                        help="train the priors and run PE of these halves only (no scores "
                             "unless both)")
    parser.add_argument("--seed", type=int, default=0, help="the PE runs' seed")
    parser.add_argument("--method", default="pe", choices=["pe", "dpsgd"],
                        help="what makes each half's synthetic set: PE (pe-jax run) or DP-SGD "
                             "fine-tuning of the same prior (pe-jax dp-finetune)")
    parser.add_argument("--shared-prior", type=pathlib.Path, default=None, metavar="DIR",
                        help="one unconditional checkpoint that serves both halves in place "
                             "of priors A and B (e.g. trained on rendered glyphs only)")
    parser.add_argument("--tiny", action="store_true", help="a smoke test of every stage")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    if args.method == "dpsgd" and any(math.isinf(e) for e in args.epsilons):
        parser.error("--method dpsgd has no non-private run: give finite --epsilons")
    prior, recipe = dict(PRIOR), dict(RECIPE)
    settings = {"pe": dict(PE_SETTINGS), "dpsgd": dict(DPSGD_SETTINGS)}
    if args.tiny:
        prior.update(TINY["prior"])
        for method in settings:
            settings[method].update(TINY[method])
        recipe.update(TINY["recipe"])
    split = load_split(out, TINY["rows"] if args.tiny else None)
    private = write_private_parts(out, split)
    if args.shared_prior is None:
        priors, tag = train_priors(out, split, prior, args.halves), ""
    else:
        priors = {name: args.shared_prior for name in args.halves}
        tag = f"_{args.shared_prior.absolute().parent.name}"
    both = len(args.halves) == len(HALVES)
    score = Scorer(split, recipe) if both and {"baselines", "pe"} & set(args.stages) else None
    if score and "baselines" in args.stages:
        start, cpu = time.perf_counter(), cpu_seconds()
        row = {"row": "real->real", "train_rows": len(split["private_labels"]),
               **score(to_unit(split["private_images"]), split["private_labels"])}
        log(json.dumps(timed(row, start, cpu)))
        start, cpu = time.perf_counter(), cpu_seconds()
        images, labels = union(prior_alone(priors, settings["pe"]))
        row = {"row": f"prior alone{tag}", "train_rows": len(labels), **score(images, labels)}
        log(json.dumps(timed(row, start, cpu)))
    if "pe" in args.stages:
        for epsilon in args.epsilons:
            folders = {name: method_run(out, args.method, epsilon, name, private[name],
                                        priors[name], settings[args.method], args.seed, tag)
                       for name in args.halves}
            if not score:
                continue
            parts = {}
            for name, folder in folders.items():
                with np.load(folder / "samples.npz") as samples:
                    parts[name] = (samples["images"], samples["labels"])
            images, labels = union(parts)
            start, cpu = time.perf_counter(), cpu_seconds()
            row = {"row": f"{args.method} epsilon {epsilon:g}{tag}", "seed": args.seed,
                   "train_rows": len(labels),
                   **score(images, labels),
                   "ledger_epsilon": {n: ledger_epsilon(f) for n, f in folders.items()},
                   "run_time": {n: json.loads((f / "timing.json").read_text())
                               for n, f in folders.items() if (f / "timing.json").exists()}}
            log(json.dumps(timed(row, start, cpu)))


if __name__ == "__main__":
    main()
