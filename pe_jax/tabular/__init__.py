"""Tabular Private Evolution: integer-coded tables, a mutation generator, a row embedder.

Rows are integer codes inside a public domain (``data``). ``TabularGenerator`` serves PE's
random and variation APIs over them (``generator``), ``OneHotEmbedder`` gives the voting
features (``embedding``), and ``mean_marginal_tvd`` measures fidelity (``evaluate``). The PE
driver, vote, release, ledger and population code are the image pipeline's own
(``pe_jax.evolve.run``): pass ``private_images=as_images(table.codes)`` and
``PEConfig(image_range=image_range(table.domain), ...)``.

The marginal-based baselines it is measured against, MST (``mst``) and AIM (``aim``), release
noisy marginals (``marginals``) and exponential-mechanism choices on the same privacy ledger,
planned in zCDP (``budget``), and fit Private-PGM models through mbi (``pgm``).
"""

from pe_jax.tabular.data import (ADULT_TEST_FRACTION, Table, check_domain, load_adult,
                                 load_adult_split, load_csv, load_domain)
from pe_jax.tabular.embedding import OneHotEmbedder
from pe_jax.tabular.evaluate import downstream_accuracy, marginal_tvds, mean_marginal_tvd
from pe_jax.tabular.generator import TabularGenerator, as_images, image_range

__all__ = [
    "ADULT_TEST_FRACTION",
    "Table",
    "check_domain",
    "load_adult",
    "load_adult_split",
    "load_csv",
    "load_domain",
    "OneHotEmbedder",
    "downstream_accuracy",
    "marginal_tvds",
    "mean_marginal_tvd",
    "TabularGenerator",
    "as_images",
    "image_range",
]
