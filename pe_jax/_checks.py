"""Argument checks shared by the public entry points: one wording for every ValueError.

Each error names the parameter, says what is allowed and what was given. Imports nothing
heavy, so every module can use it.
"""

import operator


def require(ok: bool, name: str, allowed: str, got: object) -> None:
    """Raises ``ValueError("<name> must be <allowed>; got <got>")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{name} must be {allowed}; got {got!r}")


def check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    """``value`` as an int in ``[lo, hi]`` (``hi=None``: no upper bound); bools are refused."""
    require(not isinstance(value, bool) and hasattr(type(value), "__index__"), name,
            "an integer", value)
    value = operator.index(value)
    allowed = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
    require(value >= lo and (hi is None or value <= hi), name, allowed, value)
    return value
