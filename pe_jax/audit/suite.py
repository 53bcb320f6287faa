"""All audits of one config, and their table and plot (claimed against audited bounds)."""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Callable

import ml_collections

from pe_jax import privacy
from pe_jax.audit.one_run import ONE_RUN_CONTROLS, OneRunResult, one_run_audit
from pe_jax.audit.vote_release import AuditResult, Control, vote_release_audit

__all__ = ["CAPTION", "run_suite", "format_table", "figure", "plot"]

Row = AuditResult | OneRunResult


def run_suite(config: ml_collections.ConfigDict, *, progress: bool = False) -> list[Row]:
    """The vote-release audit of the real mechanism (k = 1 and k = ``knn_k``) and of every
    control, then the one-run pipeline audit of the real run and its controls.

    ``progress`` shows a bar over the audits, naming the one that is running.
    """
    from tqdm.auto import tqdm

    vote = dict(noise_multiplier=config.vote_noise_multiplier, iterations=config.vote_iterations,
                runs=config.vote_runs, delta=config.vote_delta, confidence=config.confidence,
                seed=config.seed)
    planned: list[tuple[str, Callable[[], Row]]] = [
        (f"vote release, {control.name.lower()}, k={k}",
         functools.partial(vote_release_audit, control, k=k, **vote))
        for control, k in ((Control.NONE, 1), (Control.NONE, config.knn_k),
                           (Control.NO_NOISE, 1), (Control.HALF_NOISE, 1),
                           (Control.REPLACE_ONE, 1), (Control.UNWEIGHTED_KNN, config.knn_k))]
    sigma = privacy.noise_multiplier(config.one_run_epsilon, config.one_run_delta,
                                     config.one_run_iterations)
    planned += [(f"one run, {control.name.lower()}",
                 functools.partial(one_run_audit, control, canaries=config.one_run_canaries,
                                   noise_multiplier=sigma, iterations=config.one_run_iterations,
                                   delta=config.one_run_delta, k=config.knn_k,
                                   confidence=config.confidence, seed=config.seed))
                for control in ONE_RUN_CONTROLS]
    rows = []
    with tqdm(planned, desc="audit", unit="audit", disable=not progress) as bar:
        for name, audit in bar:
            bar.set_postfix_str(name)
            rows.append(audit())
    return rows


def _verdict(real: bool, flagged: bool) -> str:
    if real:
        return "VIOLATION" if flagged else "pass"
    return "flagged" if flagged else "NOT FLAGGED"


def format_table(rows: list[Row]) -> str:
    """A fixed-width table: one line per audit, claimed vs audited mu and epsilon, and for
    each bound whether it passes (real mechanism) or is flagged (controls)."""
    header = (f"{'audit':<24} {'mechanism':<58} {'k':>2} {'runs':>8} {'mu claim':>8} "
              f"{'mu lower':>8} {'eps claim':>9} {'eps lower':>9} {'delta':>7}  "
              f"{'mu test':<11} eps test")
    lines = [header, "-" * len(header)]
    for row in rows:
        real = row.control == Control.NONE.value
        runs = str(row.runs) if isinstance(row, AuditResult) else f"1x{row.canaries}"
        lines.append(f"{row.name:<24} {row.control:<58} {row.k:>2} {runs:>8} "
                     f"{row.mu_claimed:>8.3f} {row.mu_lower:>8.3f} "
                     f"{row.epsilon_claimed:>9.3f} {row.epsilon_lower:>9.3f} "
                     f"{row.delta:>7.0e}  {_verdict(real, row.mu_flagged):<11} "
                     f"{_verdict(real, row.epsilon_flagged)}")
    return "\n".join(lines)


CAPTION = (
    "Each bar is an audited lower bound divided by the privacy the mechanism claims (log "
    "scale): blue for mu (Gaussian DP), orange for epsilon at the row's delta. The real "
    "pe_jax release must stay left of the dashed line; a bar past it would be a privacy "
    "violation. The controls are broken on purpose (no noise, half the noise, replace-one "
    "accounted as add/remove, k-NN votes without their weight) and exist only in the audit: "
    "they are MEANT to be flagged, i.e. to reach past the line with at least one of their two "
    "bars (the one-run epsilon bound is loose for Gaussian noise and may miss the thinnest "
    "control). A control that neither bar flags means the audit has too little power to see "
    "a leak of that size.")
"""What ``plot`` writes under the bars: how to read them, and that the controls should be
flagged."""


def figure(rows: list[Row]):
    """The audit plot as a matplotlib ``Figure`` (no pyplot, no global backend change): per
    audit two bars, audited lower bound over claimed bound for mu and for epsilon, each with
    its numbers and verdict, a legend for mu and epsilon, and ``CAPTION`` below."""
    import textwrap

    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    colours = {"mu": "tab:blue", "epsilon": "tab:orange"}
    floor = 1e-2  # a zero lower bound is drawn at the left edge
    ratios = [max(lower / claimed, floor) if claimed > 0 else floor for row in rows
              for lower, claimed in ((row.mu_lower, row.mu_claimed),
                                     (row.epsilon_lower, row.epsilon_claimed))]
    fig = Figure(figsize=(12.0, 0.62 * len(rows) + 3.2), layout="constrained")
    ax = fig.subplots()
    ticks, names = [], []
    for i, row in enumerate(rows):
        real = row.control == Control.NONE.value
        runs = f"{row.runs} runs" if isinstance(row, AuditResult) else f"{row.canaries} canaries"
        audit = "vote release" if isinstance(row, AuditResult) else "one PE run"
        control = ("real mechanism: " if real else "") + row.control
        ticks.append(2 * i + 0.5)
        names.append(f"{audit}, k={row.k}, {runs}\n{control}")
        if i % 2 == 0:  # shade every other audit to group its two bars
            ax.axhspan(2 * i - 0.5, 2 * i + 1.5, color="0.93", zorder=0)
        for j, (kind, lower, claimed, flagged) in enumerate((
                ("mu", row.mu_lower, row.mu_claimed, row.mu_flagged),
                ("epsilon", row.epsilon_lower, row.epsilon_claimed, row.epsilon_flagged))):
            ratio = ratios[2 * i + j]
            ax.barh(2 * i + j, ratio - floor, left=floor, color=colours[kind], height=0.8)
            # Wrong: the real mechanism flagged, or a control that neither bound flags.
            wrong = flagged if real else not (row.mu_flagged or row.epsilon_flagged)
            verdict = _verdict(real, flagged)
            if not (real or flagged or wrong):
                verdict = "not flagged (the other bound flags it)"
            ax.text(ratio * 1.08, 2 * i + j, f"{kind} {lower:.3g} vs claim {claimed:.3g}: "
                    f"{verdict}", va="center", fontsize=7.5, color="red" if wrong else "black",
                    fontweight="bold" if wrong else "normal", zorder=3,
                    bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=0.5))
    ax.set_yticks(ticks, names, fontsize=8)
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(2 * len(rows) - 0.5, -0.5)
    ax.set_xscale("log")
    # Room right of the longest bar for its text (about two decades on this scale).
    ax.set_xlim(floor, max([10.0, *ratios]) * 120)
    line = ax.axvline(1.0, color="black", linestyle="--")
    ax.set_xlabel("audited lower bound / claimed bound (> 1: the claim is violated)")
    ax.legend([Patch(color=colours["mu"]), Patch(color=colours["epsilon"]), line],
              ["mu (mu-GDP): lower bound / claimed mu",
               "epsilon (at the row's delta): lower bound / claimed epsilon",
               "claimed bound (ratio 1)"], loc="lower left", bbox_to_anchor=(0.0, 1.0),
              ncols=3, fontsize=8, frameon=False, borderaxespad=0.2)
    fig.suptitle("pe-jax audit: audited lower bounds against the claimed privacy")
    fig.supxlabel(textwrap.fill(CAPTION, 150), fontsize=8, x=0.01, horizontalalignment="left")
    return fig


def plot(rows: list[Row], path: pathlib.Path):
    """Writes ``figure(rows)`` to ``path`` (PNG) and returns the figure."""
    fig = figure(rows)
    fig.savefig(path, dpi=110)
    return fig
