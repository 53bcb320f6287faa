"""MST's domain compression: values whose noisy 1-way count is small are merged into one.

After the 1-way marginals are released, every value of an attribute whose noisy count is
below ``3`` noise standard deviations is merged with the others like it into one "rare" value
(McKenna et al. 2021): the model then spends no parameters on cells that are mostly noise.
The mapping is computed from released counts only, so it is post-processing. ``compress``
gives the compressed table (the private rows recoded, for the later measurements), the 1-way
measurements re-expressed over it (mbi's ``LinearMeasurement.compress``) and the mappings;
``expand`` turns synthetic rows back into the original domain, drawing each rare value
uniformly among the values it merged (public randomness).
"""

from __future__ import annotations

import numpy as np

from pe_jax.tabular.data import Table

RARE_STDDEVS = 3.0


def compress(table: Table, oneway: list) -> tuple[Table, list, dict[str, np.ndarray]]:
    """``(compressed table, compressed 1-way measurements, {attribute: old -> new code})``;
    ``oneway`` holds one measurement per attribute, in the table's column order. Attributes
    with no rare value keep their codes and have no mapping."""
    from pe_jax.tabular.pgm import mbi_domain

    mappings = {}
    for attr, measurement in zip(table.attributes, oneway):
        kept = np.asarray(measurement.noisy_measurement) >= RARE_STDDEVS * measurement.stddev
        if kept.all():
            continue
        mapping = np.full(kept.size, int(kept.sum()), np.int64)  # rare values: the last code
        mapping[kept] = np.arange(int(kept.sum()))
        mappings[attr] = mapping
    domain = {a: (int(mappings[a].max()) + 1 if a in mappings else size)
              for a, size in table.domain.items()}
    codes = table.codes.copy()
    for i, attr in enumerate(table.attributes):
        if attr in mappings:
            codes[:, i] = mappings[attr][codes[:, i]]
    full = mbi_domain(table.domain)
    measured = [m.compress(mappings, full) for m in oneway]
    return Table(codes, domain), measured, mappings


def expand(rows: np.ndarray, attributes: tuple[str, ...], mappings: dict[str, np.ndarray],
           seed: int) -> np.ndarray:
    """Synthetic ``rows`` of the compressed domain back in the original one."""
    rng = np.random.default_rng(seed)
    out = np.array(rows, np.int32)
    for i, attr in enumerate(attributes):
        if attr not in mappings:
            continue
        mapping = mappings[attr]
        rare_code = int(mapping.max())
        rare_values = np.flatnonzero(mapping == rare_code)
        kept_values = np.flatnonzero(mapping != rare_code)
        column = out[:, i]
        is_rare = column == rare_code
        decoded = np.empty_like(column)
        decoded[~is_rare] = kept_values[column[~is_rare]]
        decoded[is_rare] = rng.choice(rare_values, int(is_rare.sum()))
        out[:, i] = decoded
    return out
