"""Tables of integer-coded categorical attributes, loaded from CSV plus a domain file.

A ``Table`` holds ``codes``, an int32 array ``(n, A)``, and ``domain``, the number of values
of each of its A attributes in column order (attribute ``a`` takes values ``0 .. size - 1``).
The domain is public (it is part of the data set's definition, not read from the rows), so
PE may use it freely: the generator draws inside it and the embedder sizes its features by it.

``load_csv(csv, domain_json)`` reads a CSV with a header row naming the attributes (plain or
gzip-compressed, by the ``.gz`` suffix) and a JSON object ``{attribute: size}``; the table's
columns follow the domain file's order. ``load_adult()`` is the embedded default: the
discretised UCI Adult table (48,842 rows, 14 attributes; ``pe_jax/assets/adult/README.md``
gives its source and licence). ``Table.split`` sets aside a fixed part of the rows by the
hash rule of ``pe_jax.data.types.heldout_mask``; ``load_adult_split()`` is Adult's fixed
train/test split (20 % test).
"""

import dataclasses
import gzip
import io
import json
import pathlib

import numpy as np

from pe_jax.data.types import HELDOUT_SALT, heldout_mask

ADULT_DIR = pathlib.Path(__file__).resolve().parent.parent / "assets" / "adult"
ADULT_CSV = ADULT_DIR / "adult.csv.gz"
ADULT_DOMAIN = ADULT_DIR / "adult-domain.json"
ADULT_TEST_FRACTION = 0.2
"""Adult's fixed test share: row i is a test row iff ``heldout_mask`` holds it out."""


@dataclasses.dataclass(frozen=True)
class Table:
    """Integer codes ``(n, A)`` int32 and the domain ``{attribute: size}`` of its columns."""

    codes: np.ndarray
    domain: dict[str, int]

    def __post_init__(self) -> None:
        domain = check_domain(self.domain)
        codes = np.asarray(self.codes)
        if codes.ndim != 2 or codes.shape[1] != len(domain):
            raise ValueError(f"codes must have shape (n, {len(domain)}), one column per "
                             f"attribute of the domain; got shape {codes.shape}")
        if codes.size and not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be integers; got dtype {codes.dtype}")
        sizes = np.asarray(list(domain.values()), np.int64)
        bad = (codes < 0) | (codes >= sizes)
        if bad.any():
            columns = [name for name, b in zip(domain, bad.any(axis=0)) if b]
            raise ValueError(f"codes must lie in [0, size) of their attribute; "
                             f"{int(bad.sum())} values outside it, in {columns}")
        object.__setattr__(self, "codes", codes.astype(np.int32))
        object.__setattr__(self, "domain", domain)

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(self.domain)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(self.domain.values())

    def __len__(self) -> int:
        return self.codes.shape[0]

    def take(self, rows: np.ndarray) -> "Table":
        return Table(self.codes[np.asarray(rows)], self.domain)

    def split(self, fraction: float, salt: str = HELDOUT_SALT) -> tuple["Table", "Table"]:
        """``(rest, held_out)``: the rows ``heldout_mask(len(self), fraction, salt)`` holds
        out, set aside. Fixed by the table's row order, the fraction and the salt only."""
        held = heldout_mask(len(self), fraction, salt)
        if held.all() or not held.any():
            raise ValueError(f"fraction {fraction!r} of {len(held)} rows leaves a part empty")
        return self.take(np.flatnonzero(~held)), self.take(np.flatnonzero(held))


def check_domain(domain: object) -> dict[str, int]:
    """``domain`` as a dict ``{attribute name: number of values >= 1}``, in its own order."""
    if not isinstance(domain, dict) or not domain:
        raise ValueError(f"domain must be a non-empty dict {{attribute: size}}; got {domain!r}")
    out = {}
    for name, size in domain.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"domain attribute names must be non-empty strings; got {name!r}")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"domain size of {name!r} must be an integer >= 1; got {size!r}")
        out[name] = int(size)
    return out


def load_domain(path: str | pathlib.Path) -> dict[str, int]:
    """The domain file: a JSON object ``{attribute: number of values}``."""
    path = pathlib.Path(path)
    try:
        domain = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"domain file {path} is not valid JSON: {error}") from None
    return check_domain(domain)


def load_csv(csv: str | pathlib.Path, domain_json: str | pathlib.Path) -> Table:
    """A table from an integer-coded CSV (header row of attribute names; ``.gz`` is read
    compressed) and its domain file; the columns are put in the domain file's order."""
    csv = pathlib.Path(csv)
    domain = load_domain(domain_json)
    opener = gzip.open if csv.suffix == ".gz" else open
    with opener(csv, "rt", newline="") as f:
        text = f.read()
    header, _, body = text.partition("\n")
    names = [name.strip() for name in header.strip().split(",")]
    if len(set(names)) != len(names):
        raise ValueError(f"{csv}: the header names an attribute twice: {names}")
    missing = [a for a in domain if a not in names]
    extra = [a for a in names if a not in domain]
    if missing or extra:
        raise ValueError(f"{csv}: the header must name the domain's attributes exactly; "
                         f"missing {missing}, not in the domain {extra}")
    try:
        values = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as error:
        raise ValueError(f"{csv}: every row must hold {len(names)} integer codes "
                         f"({error})") from None
    if values.size == 0:
        values = np.zeros((0, len(names)), np.int64)
    if values.shape[1] != len(names):
        raise ValueError(f"{csv}: rows must have {len(names)} values; got {values.shape[1]}")
    order = [names.index(a) for a in domain]
    return Table(values[:, order], domain)


def load_adult() -> Table:
    """The discretised UCI Adult table shipped with pe_jax (48,842 rows, 14 attributes)."""
    return load_csv(ADULT_CSV, ADULT_DOMAIN)


def load_adult_split() -> tuple[Table, Table]:
    """Adult's fixed ``(train, test)`` split: ``ADULT_TEST_FRACTION`` of the rows by the
    ``heldout_mask`` rule (default salt), the same on every machine and in every run."""
    return load_adult().split(ADULT_TEST_FRACTION)
