"""``pe-jax tabular``: synthetic rows of a table by PE, MST or AIM, with metrics and report.

``pe-jax tabular [--method pe|mst|aim] [--config FILE] [--set key=value ...] [--out DIR]``
runs one method on the config's private rows (default ``pe_jax/configs/adult.py``: Adult's
train split) and writes to a new output folder: ``synthetic.csv`` (integer codes, a header of
attribute names), ``metrics.json`` (mean 2-way and 3-way marginal TVD and downstream accuracy,
all measured on the held-out rows, and the wall time), ``config.json`` and the privacy report
(``privacy.json``, ``privacy.txt``, as ``pe-jax run`` writes it). A folder that already holds
files is refused before anything runs. Every setting and the data are checked before the
first release.
"""

import argparse
import json
import math
import pathlib
import sys
import time
from collections.abc import Callable

import ml_collections

from pe_jax.commands import add_config_arguments, output_dir
from pe_jax.configs import CONFIG_DIR, load_config

NAME = "tabular"
HELP = "synthesise a table (PE, MST or AIM) and write it with metrics and a privacy report"
METHODS = ("pe", "mst", "aim")
ADJACENCY = "add_remove"
MAX_SEED = 2 ** 32 - 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, CONFIG_DIR / "adult.py", "pe_jax/configs/adult.py")
    parser.add_argument("--method", choices=METHODS, default=None,
                        help="the synthesiser (default: the config's method)")
    parser.add_argument("--quiet", action="store_true", help="no per-round lines from AIM")


def execute(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.set)
    if args.method is not None:
        config.method = args.method
    report, metrics, out = run_tabular(config, output_dir(args.out, config.name),
                                       log=None if args.quiet else _stderr)
    from pe_jax import reporting

    print(f"wrote {out}: {config.method}, {reporting.guarantee(report)}; 2-way TVD "
          f"{metrics['tvd2']:.4f}, 3-way TVD {metrics['tvd3']:.4f}"
          + (f", accuracy {metrics['accuracy']:.4f}" if "accuracy" in metrics else ""))
    return 0


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every setting ``pe-jax tabular`` reads, before any folder or data is touched."""
    from pe_jax._checks import check_int, require
    from pe_jax.configs.validate import check_bool, check_choice, check_real

    check_choice("method", config.method, METHODS)
    require(isinstance(config.data, str) and config.data, "data",
            '"adult" or the path of an integer-coded CSV', config.data)
    if config.data != "adult":
        require(pathlib.Path(config.data).is_file(), "data", "an existing CSV file",
                config.data)
        require(isinstance(config.domain, str) and pathlib.Path(config.domain).is_file(),
                "domain", "the domain JSON file of the CSV data", config.domain)
    check_real("heldout", config.heldout, 0, 1, lo_open=True, hi_open=True)
    check_int("private_rows", config.private_rows, 0)
    require(isinstance(config.target, str), "target", 'an attribute name or ""', config.target)
    check_real("epsilon", config.epsilon, 0, lo_open=True)
    check_real("delta", config.delta, 0, 1, lo_open=True, hi_open=True)
    require(config.noise_seed == -1 or not isinstance(config.noise_seed, bool)
            and isinstance(config.noise_seed, int) and 0 <= config.noise_seed <= MAX_SEED,
            "noise_seed", f"-1 (the CSPRNG) or a seed in [0, {MAX_SEED}]", config.noise_seed)
    check_int("seed", config.seed, 0, MAX_SEED)
    check_int("synthetic_rows", config.synthetic_rows, 0)
    check_int("mst.iters", config.mst.iters, 1)
    if config.aim.rounds:
        check_int("aim.rounds", config.aim.rounds, 1)
    check_real("aim.max_model_size", config.aim.max_model_size, 0, lo_open=True)
    check_int("aim.iters", config.aim.iters, 1)
    check_int("aim.final_iters", config.aim.final_iters, 1)
    check_int("pe.iterations", config.pe.iterations, 1)
    check_int("pe.samples", config.pe.samples, 1)
    check_real("pe.degree_start", config.pe.degree_start, 0, 1, lo_open=True)
    check_real("pe.degree_end", config.pe.degree_end, 0, 1, lo_open=True)
    check_real("pe.threshold", config.pe.threshold, 0)
    check_bool("pe.keep_selected", config.pe.keep_selected)
    check_real("pe.marginal_share", config.pe.marginal_share, 0, 1, hi_open=True)
    require(isinstance(config.pe.ordinal, str), "pe.ordinal",
            'comma-separated attribute names ("" for none)', config.pe.ordinal)


def load_tables(config: ml_collections.ConfigDict):
    """``(private, held_out)`` tables: the data split by the fixed hash rule, the private part
    cut to ``private_rows`` when that is positive. Any problem with the file or the target
    attribute is a ValueError here, before anything is released."""
    from pe_jax import tabular

    table = (tabular.load_adult() if config.data == "adult"
             else tabular.load_csv(config.data, config.domain))
    private, held_out = table.split(config.heldout)
    if config.private_rows:
        private = private.take(range(min(config.private_rows, len(private))))
    if config.target and config.target not in table.domain:
        raise ValueError(f"target must be an attribute of the data {list(table.domain)} or "
                         f'""; got {config.target!r}')
    unknown = [a for a in _ordinal(config) if a not in table.domain]
    if unknown:
        raise ValueError(f"pe.ordinal must name attributes of the data {list(table.domain)}; "
                         f"got {unknown}")
    return private, held_out


def _ordinal(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """``pe.ordinal``'s comma-separated attribute names."""
    return tuple(a.strip() for a in config.pe.ordinal.split(",") if a.strip())


def run_tabular(config: ml_collections.ConfigDict, out: pathlib.Path,
                log: Callable[[str], None] | None = None) -> tuple[dict, dict, pathlib.Path]:
    """Runs the config's method and writes its outputs to ``out``; returns the privacy report,
    the metrics and the folder. ``log`` gets AIM's per-round lines."""
    import numpy as np

    from pe_jax import privacy, reporting, tabular

    validate(config)
    reporting.check_output_dir(out)
    private, held_out = load_tables(config)
    rng = None if config.noise_seed == -1 else np.random.default_rng(config.noise_seed)
    ledger = privacy.PrivacyLedger(config.delta, adjacency=ADJACENCY,
                                   epsilon_budget=config.epsilon)
    out = reporting.prepare_output_dir(out)
    (out / "config.json").write_text(config.to_json(indent=2) + "\n")
    start = time.perf_counter()
    rows = _synthesise(config, private, ledger, rng, log)
    seconds = time.perf_counter() - start
    _write_csv(out / "synthetic.csv", private.attributes, rows)
    metrics = {
        "method": config.method, "rows": len(rows), "seconds": round(seconds, 2),
        "measured_on": f"the {len(held_out)} held-out rows",
        "tvd2": tabular.mean_marginal_tvd(held_out, rows, held_out.domain),
        "tvd3": tabular.mean_marginal_tvd(held_out, rows, held_out.domain, way=3)
        if len(held_out.domain) >= 3 else None}
    if config.target:
        metrics["target"] = config.target
        metrics["accuracy"] = tabular.downstream_accuracy(rows, held_out, held_out.domain,
                                                          config.target)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    report = _report(config, ledger, private, held_out)
    reporting.write_privacy_report(out, report)
    return report, metrics, out


def _synthesise(config, private, ledger, rng, log):
    """The method's synthetic rows; every release goes into ``ledger``."""
    from pe_jax.tabular.aim import aim
    from pe_jax.tabular.mst import mst
    from pe_jax.tabular.pe import run_pe

    rows = config.synthetic_rows or None
    common = dict(epsilon=config.epsilon, delta=config.delta, ledger=ledger, rng=rng)
    if config.method == "mst":
        return mst(private, **common, rows=rows, iters=config.mst.iters, seed=config.seed).rows
    if config.method == "aim":
        return aim(private, **common, rounds=config.aim.rounds or None,
                   max_model_size=config.aim.max_model_size, rows=rows,
                   iters=config.aim.iters, final_iters=config.aim.final_iters,
                   seed=config.seed, log=log).rows
    pe = config.pe
    return run_pe(private, **common, seed=config.seed, iterations=pe.iterations,
                  samples=pe.samples, degree_start=pe.degree_start,
                  degree_end=pe.degree_end, threshold=pe.threshold,
                  keep_selected=pe.keep_selected, ordinal=_ordinal(config),
                  marginal_share=pe.marginal_share)


def _write_csv(path: pathlib.Path, attributes, rows) -> None:
    import numpy as np

    np.savetxt(path, rows, fmt="%d", delimiter=",", header=",".join(attributes), comments="")


SENSITIVITY = {
    "pe": None,  # the report's own sentence: PE's vote histograms
    "mst": "L2 1 per marginal release: each protected row adds one count to one cell of each "
           "of the m marginals released together, which are weighted 1/sqrt(m); each "
           "exponential-mechanism choice scores edges by L1 errors of true 2-way counts, "
           "sensitivity 1",
    "aim": "L2 1 per marginal release: each protected row adds one count to one cell of each "
           "of the m marginals released together, which are weighted 1/sqrt(m); each "
           "exponential-mechanism choice scores candidates by weighted L1 errors of true "
           "counts, sensitivity the largest weight",
}


CHOICES = {"mst": "the next edge of the spanning tree whose 2-way marginals are measured",
           "aim": "the next marginal to measure"}


def _marginal_method_how(method: str, events, report: dict) -> list[str]:
    """The privacy text's "How" lines for MST and AIM: marginal releases and exponential
    choices, counted from the run's ledger events (PE's text speaks of vote histograms)."""
    measured = [e for e in events if e.mechanism != "exponential"]
    chosen = [e for e in events if e.mechanism == "exponential"]
    sigmas = ", ".join(f"{s:.4g}" for s in sorted({e.noise_multiplier for e in measured}))
    scales = ", ".join(f"{s:.4g}" for s in sorted({e.noise_multiplier for e in chosen}))
    sizes = ", ".join(str(k) for k in sorted({e.k for e in measured}))
    return [
        f"  {len(measured)} releases of noisy marginal counts, each of m = {sizes} marginals "
        "measured together: every protected row adds one count to one cell of each, weighted "
        "1/sqrt(m), so one row changes a release by L2 norm 1; discrete Gaussian noise of scale "
        f"sigma * sqrt(m) is added to each count, sigma = {sigmas}.",
        f"  {len(chosen)} choices by the exponential mechanism, each picking {CHOICES[method]}: "
        f"Gumbel noise of scale {scales} (relative to the score's sensitivity) on every "
        "candidate's score, the largest noisy score chosen.",
        "  The synthetic rows are sampled from a graphical model fitted to the noisy marginals "
        "alone (post-processing).",
        f"  Noise drawn from {', '.join(report['randomness'])}.",
        f"  Accountant: {report['accountant']}."]


def _measured_prior_how(events, report: dict) -> list[str]:
    """The privacy text's "How" lines for PE with a measured prior: its one marginal release
    (the first event, ``k`` = the number of attributes), then the vote histograms."""
    prior, votes = events[0], events[1:]
    return [
        f"  1 release of the noisy 1-way marginals of all m = {prior.k} attributes together, "
        "the prior the generator draws new cells from: every protected row adds one count to "
        "one cell of each, weighted 1/sqrt(m), so one row changes it by L2 norm 1; discrete "
        f"Gaussian noise of scale sigma * sqrt(m), sigma = {prior.noise_multiplier:.4g}.",
        f"  {len(votes)} releases, one per iteration, each a histogram of votes: every "
        "protected row casts 1 vote for its nearest synthetic row, so one row changes a "
        "release by L2 norm 1; discrete Gaussian noise of scale sigma = "
        f"{', '.join(sorted({f'{e.noise_multiplier:.4g}' for e in votes}))}.",
        f"  Noise drawn from {', '.join(report['randomness'])}.",
        f"  Accountant: {report['accountant']}."]


def _report(config, ledger, private, held_out) -> dict:
    """The privacy report of ``pe-jax run``'s schema, with the method's own sensitivity and
    accountant where they differ from PE's."""
    from pe_jax import reporting
    from pe_jax.privacy.accounting import ZCDP_ACCOUNTANT

    source = "Adult (pe_jax/assets/adult)" if config.data == "adult" else config.data
    private_data = {
        "description": f"the {len(private):,} rows of {source} that the fixed held-out split "
                       "leaves (the first private_rows of them when it is set); the guarantee "
                       "covers only them",
        "data": config.data, "rows": len(private)}
    public = {
        "domain": {"description": "the number of values of each attribute, part of the data "
                                  "set's definition", "domain": private.domain},
        "heldout_reference": {
            "description": f"the {len(held_out):,} rows the fixed split holds out: they are "
                           "never used by the method; metrics.json is measured on them, "
                           "without noise, so it lies outside the guarantee",
            "rows": len(held_out), "fraction": config.heldout},
        "settings": {"description": "every setting of the run, in config.json",
                     "method": config.method},
    }
    report = reporting.privacy_report(
        ledger, target_epsilon=config.epsilon, private_data=private_data, public=public,
        non_private_outputs={"metrics.json": "marginal TVDs and downstream accuracy measured "
                                             "without noise on the held-out rows"},
        shared_ledger=False)
    if SENSITIVITY[config.method] is not None:
        report["sensitivity"] = SENSITIVITY[config.method]
        report["accountant"] = ZCDP_ACCOUNTANT
        report["how"] = _marginal_method_how(config.method, ledger.events, report)
    elif config.pe.marginal_share > 0:
        report["sensitivity"] = ("L2 1 per release: one vote per protected row in each vote "
                                 "histogram; one count in each of the m 1-way marginals, "
                                 "weighted 1/sqrt(m), in the prior's release")
        report["how"] = _measured_prior_how(ledger.events, report)
    if report["epsilon"] is not None and not math.isfinite(report["epsilon"]):
        report["epsilon"] = None
    return report
