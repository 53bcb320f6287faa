"""All audits of one config, and their table and plot (claimed against audited bounds)."""

from __future__ import annotations

import pathlib

import ml_collections

from pe_jax import privacy
from pe_jax.audit.one_run import ONE_RUN_CONTROLS, OneRunResult, one_run_audit
from pe_jax.audit.vote_release import AuditResult, Control, vote_release_audit

__all__ = ["run_suite", "format_table", "plot"]

Row = AuditResult | OneRunResult


def run_suite(config: ml_collections.ConfigDict) -> list[Row]:
    """The vote-release audit of the real mechanism (k = 1 and k = ``knn_k``) and of every
    control, then the one-run pipeline audit of the real run and its controls."""
    vote = dict(noise_multiplier=config.vote_noise_multiplier, iterations=config.vote_iterations,
                runs=config.vote_runs, delta=config.vote_delta, confidence=config.confidence,
                seed=config.seed)
    rows: list[Row] = [
        vote_release_audit(Control.NONE, k=1, **vote),
        vote_release_audit(Control.NONE, k=config.knn_k, **vote),
        vote_release_audit(Control.NO_NOISE, k=1, **vote),
        vote_release_audit(Control.HALF_NOISE, k=1, **vote),
        vote_release_audit(Control.REPLACE_ONE, k=1, **vote),
        vote_release_audit(Control.UNWEIGHTED_KNN, k=config.knn_k, **vote),
    ]
    sigma = privacy.noise_multiplier(config.one_run_epsilon, config.one_run_delta,
                                     config.one_run_iterations)
    rows += [one_run_audit(control, canaries=config.one_run_canaries, noise_multiplier=sigma,
                           iterations=config.one_run_iterations, delta=config.one_run_delta,
                           k=config.knn_k, confidence=config.confidence, seed=config.seed)
             for control in ONE_RUN_CONTROLS]
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


def plot(rows: list[Row], path: pathlib.Path) -> None:
    """Audited lower bound over claimed bound per audit and bound (log scale; > 1 flags)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    series = []  # (label, kind, lower, claimed)
    for row in rows:
        label = f"{row.name}: {row.control} (k={row.k})"
        series.append((label, "mu", row.mu_lower, row.mu_claimed))
        series.append((label, "epsilon", row.epsilon_lower, row.epsilon_claimed))
    fig, ax = plt.subplots(figsize=(11, 0.3 * len(series) + 1.5))
    colours = {"mu": "tab:blue", "epsilon": "tab:orange"}
    floor = 1e-2  # a zero lower bound is drawn at the left edge
    for i, (_, kind, lower, claimed) in enumerate(series):
        ax.barh(i, max(lower / claimed, floor) - floor, left=floor, color=colours[kind])
    ax.set_yticks(range(len(series)), [f"{label} [{kind} {lower:.3g} vs claim {claimed:.3g}]"
                                       for label, kind, lower, claimed in series], fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linestyle="--", label="claimed bound")
    ax.invert_yaxis()
    ax.set_xlabel("audited lower bound / claimed bound (> 1: the claim is violated)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
