"""Fidelity of synthetic tables: total variation distance between k-way marginals.

``marginal_tvds(real, synthetic, domain, way=2)`` gives, for every set of ``way`` attributes
(all ``C(A, way)`` of them, in ``itertools.combinations`` order), the total variation distance
``0.5 * sum |p - q|`` between the real and the synthetic normalised contingency tables;
``mean_marginal_tvd`` is their mean, the usual summary (Private-PGM, MST, AIM). All marginals
are counted by one ``np.bincount`` over a flat index, so a call is a few vectorised passes
over the rows. 0 means every marginal matches; 1 means disjoint supports.

``downstream_accuracy(train, test, domain, target)`` is the other usual measure: train a
classifier of the ``target`` attribute on one table (the synthetic rows) and report its
accuracy on another (real held-out rows). The classifier is scikit-learn's logistic regression
on the one-hot codes of the other attributes: fast, deterministic, and the same for every
method compared.
"""

import itertools

import numpy as np

from pe_jax.tabular.data import Table, check_domain

_CHUNK = 8192


def _codes(rows, width: int, name: str) -> np.ndarray:
    rows = rows.codes if isinstance(rows, Table) else np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != width or rows.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty table of shape (n, {width}); got shape "
                         f"{rows.shape}")
    return rows.astype(np.int64)


def marginal_tvds(real, synthetic, domain: dict[str, int], way: int = 2) -> np.ndarray:
    """TVD of every ``way``-attribute marginal, shape ``(C(A, way),)``; rows are ``Table``s or
    int arrays ``(n, A)`` with codes inside ``domain``."""
    sizes = np.asarray(list(check_domain(domain).values()), np.int64)
    if isinstance(way, bool) or not isinstance(way, int) or not 1 <= way <= len(sizes):
        raise ValueError(f"way must be an int in [1, {len(sizes)}]; got {way!r}")
    real = _codes(real, len(sizes), "real")
    synthetic = _codes(synthetic, len(sizes), "synthetic")
    for name, rows in (("real", real), ("synthetic", synthetic)):
        if rows.min() < 0 or np.any(rows.max(axis=0) >= sizes):
            raise ValueError(f"{name} has codes outside the domain")
    subsets = np.asarray(list(itertools.combinations(range(len(sizes)), way)))  # (M, way)
    cells = np.prod(sizes[subsets], axis=1)  # (M,)
    starts = np.concatenate([[0], np.cumsum(cells)[:-1]])
    # Row-major strides inside each marginal: the last attribute varies fastest.
    strides = np.ones_like(subsets)
    for j in range(way - 2, -1, -1):
        strides[:, j] = strides[:, j + 1] * sizes[subsets[:, j + 1]]

    def distribution(rows: np.ndarray) -> np.ndarray:
        counts = np.zeros(int(cells.sum()), np.int64)
        for begin in range(0, len(rows), _CHUNK):  # bounded memory for 3-way marginals
            block = rows[begin:begin + _CHUNK]
            flat = starts + np.einsum("nmw,mw->nm", block[:, subsets], strides)  # (n, M)
            counts += np.bincount(flat.ravel(), minlength=len(counts))
        return counts / len(rows)  # every marginal sums to 1

    gap = np.abs(distribution(real) - distribution(synthetic))
    return 0.5 * np.add.reduceat(gap, starts)


def mean_marginal_tvd(real, synthetic, domain: dict[str, int], way: int = 2) -> float:
    """The mean of ``marginal_tvds``: the headline fidelity number (lower is better)."""
    return float(marginal_tvds(real, synthetic, domain, way).mean())


def downstream_accuracy(train, test, domain: dict[str, int], target: str) -> float:
    """Accuracy on ``test`` of a logistic regression of ``target`` trained on ``train``.

    Features are the one-hot codes of every other attribute of ``domain``. A ``train`` table
    holding one class only gives the constant classifier of that class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    domain = check_domain(domain)
    if target not in domain:
        raise ValueError(f"target must be an attribute of the domain {list(domain)}; "
                         f"got {target!r}")
    train = _codes(train, len(domain), "train")
    test = _codes(test, len(domain), "test")
    column = list(domain).index(target)
    features = [i for i in range(len(domain)) if i != column]
    encoder = OneHotEncoder(categories=[np.arange(domain[a]) for a in domain if a != target],
                            handle_unknown="ignore")
    x_train = encoder.fit_transform(train[:, features])
    y_train, y_test = train[:, column], test[:, column]
    if len(np.unique(y_train)) == 1:
        return float(np.mean(y_test == y_train[0]))
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    return float(np.mean(model.predict(encoder.transform(test[:, features])) == y_test))
