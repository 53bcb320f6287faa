"""Empirical privacy audits of pe_jax's release path, with negative controls that they must flag.

No test proves differential privacy; an audit looks for a violation with a statistical test
that has power. Three bounds, each a rigorous lower bound at a stated confidence:

* ``vote_release_audit``: a canary with its own synthetic slot, neighbouring datasets with
  and without it, thousands of seeded runs of the real kernel and release sampler; lower
  bounds on mu (mu-GDP) and on epsilon from Clopper--Pearson rates (``vote_release``);
* ``one_run_audit``: one run of the whole PE pipeline with m canaries, each included with
  probability 1/2; lower bounds on epsilon (Steinke, Nasr and Jagielski 2023) and on mu (an
  f-DP analysis after Mahloujifar, Melis and Chaudhuri 2024) from the right guesses
  (``one_run``);
* ``Control``: broken mechanisms (no noise, half the noise, replace-one accounted as
  add/remove, unweighted k-NN votes) that exist only here; an audit that does not flag them
  has no power.

``run_suite`` runs all of them from a config (``pe_jax/configs/audit.py``), with a progress
bar if asked; ``format_table`` and ``plot`` (``figure``: the same as a matplotlib figure) show
claimed against audited bounds. ``pe-jax audit`` is the command.
"""

from pe_jax.audit.bounds import (clopper_pearson_upper, epsilon_lower_bound, gdp_mu_lower_bound,
                                 one_run_epsilon_lower_bound, one_run_mu_lower_bound)
from pe_jax.audit.one_run import ONE_RUN_CONTROLS, OneRunResult, one_run_audit
from pe_jax.audit.suite import figure, format_table, plot, run_suite
from pe_jax.audit.vote_release import AuditResult, Control, vote_release_audit

__all__ = [
    "Control",
    "AuditResult",
    "OneRunResult",
    "ONE_RUN_CONTROLS",
    "vote_release_audit",
    "one_run_audit",
    "run_suite",
    "format_table",
    "figure",
    "plot",
    "clopper_pearson_upper",
    "gdp_mu_lower_bound",
    "epsilon_lower_bound",
    "one_run_epsilon_lower_bound",
    "one_run_mu_lower_bound",
]
