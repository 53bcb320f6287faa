"""Run configurations shipped with the package, and the machinery that loads and checks them.

Each config module (``digits``, ``digits_glyphs``, ``fashion_mnist``, ``cifar10``,
``camelyon17``, and the training and audit configs) has ``get_config()``. ``sections`` defines
the sections of a ``pe-jax run`` config, ``build`` builds each object from its section and
``validate`` checks a run config before anything is spent.

``load_config`` runs a config file and applies ``key=value`` overrides; every ``pe-jax``
command that takes ``--config`` goes through it. An override is typed by the value it replaces
(``parse_override``): an int key takes only an integer, a float key only a finite number, a
bool key ``true`` or ``false``, a str key any text, a list, tuple or dict key a JSON value of
that kind. A dotted key (``pe.k=3``, ``generator.glyph_priors.rotation.std=0.1``) sets a value
inside a nested section. Every refusal is one ValueError that names the key, what it takes and
what was given; an unknown key also gets the nearest known one, and a key of the old flat run
config its new place (``epsilon`` -> ``privacy.epsilon``).
"""

import difflib
import importlib.util
import json
import math
import pathlib
from collections.abc import Sequence

import ml_collections

CONFIG_DIR = pathlib.Path(__file__).parent
DEFAULT_CONFIG = CONFIG_DIR / "digits.py"


def load_config(path: str | pathlib.Path, overrides: Sequence[str] = ()
                ) -> ml_collections.ConfigDict:
    """Runs ``get_config()`` from a config file, then applies ``key=value`` overrides."""
    path = pathlib.Path(path)
    spec = (importlib.util.spec_from_file_location(f"pe_jax_config_{path.stem}", path)
            if path.is_file() and path.suffix == ".py" else None)
    if spec is None:
        raise ValueError("--config must be an existing .py file with get_config(); "
                         f"got {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise ValueError(f"--config {str(path)!r} is not valid Python: {error.msg} "
                         f"(line {error.lineno})") from None
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ValueError(f"--config must be a .py file that defines get_config(); "
                         f"{str(path)!r} does not")
    config = get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(f"--config: get_config() of {str(path)!r} must return an "
                         f"ml_collections.ConfigDict; got {type(config).__name__}")
    return apply_overrides(config, overrides)


def load_saved_config(path: str | pathlib.Path, overrides: Sequence[str] = ()
                      ) -> ml_collections.ConfigDict:
    """The ``config.json`` a run wrote (``pe-jax run --resume``), with ``key=value`` overrides."""
    path = pathlib.Path(path)
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"--resume: cannot read the run's config {str(path)!r}: {error}"
                         ) from None
    if not isinstance(saved, dict):
        raise ValueError(f"--resume: the run's config {str(path)!r} must hold a JSON object; "
                         f"got {type(saved).__name__}")
    return apply_overrides(ml_collections.ConfigDict(saved), overrides)


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]
                    ) -> ml_collections.ConfigDict:
    """Sets each ``key=value`` of ``overrides``, typed by the value it replaces
    (``parse_override``); a dotted key names a value in a nested section.

    A key the config lacks is refused with the keys it has and the nearest one; a key of the
    old flat run config (``epsilon``) is refused with its new place (``privacy.epsilon``); a
    whole section of a run config cannot be set at once.
    """
    from pe_jax.configs.sections import DEFAULTS

    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep:
            keys = ", ".join(sorted(config.keys()))
            raise ValueError(f"--set takes key=value with a key of the config ({keys}); "
                             f"got {item!r}")
        moved = _renamed(config, name)
        if moved is not None:
            raise ValueError(f"--set {name}: run configs are in sections now; use {moved} "
                             f"(--set {moved}={text}); got {item!r}")
        section, key = _section(config, name, item)
        if key not in section:
            keys = ", ".join(sorted(section.keys()))
            raise ValueError(f"--set takes key=value with a key of the config ({keys})"
                             f"{_did_you_mean(config, name)}; got {item!r}")
        if section is config and key in DEFAULTS and isinstance(section[key],
                                                                  ml_collections.ConfigDict):
            keys = ", ".join(f"{key}.{inner}" for inner in section[key])
            raise ValueError(f"--set {key}: {key} is a section of the run config; set its keys "
                             f"one at a time ({keys}); got {item!r}")
        section[key] = parse_override(name, text, section[key])
    return config


def _renamed(config: ml_collections.ConfigDict, name: str) -> str | None:
    """Where the old flat run-config key ``name`` (or its first part) lives in ``config``'s
    sections, when ``config`` is a run config that has that place; else None."""
    from pe_jax.configs.sections import DEFAULTS, RENAMED

    first, _, rest = name.partition(".")
    if first in DEFAULTS and isinstance(config.get(first), ml_collections.ConfigDict):
        if rest or first not in RENAMED:  # a key inside a section, or the section itself
            return None
    moved = RENAMED.get(first)
    if moved is None:
        return None
    moved = f"{moved}.{rest}" if rest else moved
    section_name, _, key = RENAMED[first].partition(".")
    inner = config.get(section_name)
    return moved if isinstance(inner, ml_collections.ConfigDict) and key in inner else None


def _leaf_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every dotted key of ``config``, nested sections included."""
    keys = []
    for key, value in config.items():
        keys.append(prefix + key)
        if isinstance(value, ml_collections.ConfigDict):
            keys += _leaf_keys(value, f"{prefix}{key}.")
    return keys


def _did_you_mean(config: ml_collections.ConfigDict, name: str) -> str:
    """``"; did you mean X?"`` for the key of ``config`` nearest to ``name``, or ``""``."""
    keys = _leaf_keys(config)
    near = difflib.get_close_matches(name, keys, n=1, cutoff=0.75)
    if not near and name.count(".") == 1:  # the key in another section: pe.epsilon
        last = name.rsplit(".", 1)[-1]
        near = [key for key in keys if key.count(".") == 1 and key.endswith("." + last)]
    return f"; did you mean {near[0]}?" if near else ""


def _section(config: ml_collections.ConfigDict, name: str, item: str
             ) -> tuple[ml_collections.ConfigDict, str]:
    """The section that holds the dotted key ``name``, and the key's last part."""
    *parents, key = name.split(".")
    section = config
    for i, part in enumerate(parents):
        inner = section.get(part) if part in section else None
        if not isinstance(inner, ml_collections.ConfigDict):
            keys = ", ".join(sorted(section.keys()))
            where = ".".join(parents[:i]) or "the config"
            raise ValueError(f"--set takes key=value with a key of the config; {part!r} is not "
                             f"a section of {where} ({keys}){_did_you_mean(config, name)}; "
                             f"got {item!r}")
        section = inner
    return section, key


def parse_override(name: str, text: str, current: object) -> object:
    """The value of ``--set name=text``, of the type of ``current`` (the value it replaces).

    bool: ``true``/``false`` (any case); int: an integer literal (``2.5`` is refused, never
    rounded); float: a finite number; str: the text itself; list/tuple: a JSON array (each item
    typed like the current items when they share one type); dict/ConfigDict: a JSON object;
    None: any JSON value, else the text. Raises ValueError naming ``--set name``.
    """
    if isinstance(current, str):
        return text
    if isinstance(current, (bool, int, float)):
        return _scalar(name, text.strip(), current)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        if current is None:
            return text
        value = _NOT_JSON
    if isinstance(current, (list, tuple)):
        _require(isinstance(value, list), name, "a JSON array like [1, 2]", text)
        kinds = {type(item) for item in current}
        if len(kinds) == 1 and kinds <= {bool, int, float, str}:
            (kind,) = kinds
            value = [_typed_item(name, item, kind, text) for item in value]
        return type(current)(value)
    if isinstance(current, (dict, ml_collections.ConfigDict)):
        _require(isinstance(value, dict), name, 'a JSON object like {"key": 1}', text)
        return ml_collections.ConfigDict(value) if isinstance(
            current, ml_collections.ConfigDict) else value
    _require(value is not _NOT_JSON, name, "a JSON value", text)
    return value


_NOT_JSON = object()


def _scalar(name: str, text: str, current: bool | int | float) -> bool | int | float:
    """``text`` as a bool, int or finite float, the type of ``current``."""
    if isinstance(current, bool):
        _require(text.lower() in ("true", "false"), name, "true or false", text)
        return text.lower() == "true"
    if isinstance(current, int):
        try:
            return int(text, 10)
        except ValueError:
            _require(False, name, "an integer (its default is "
                     f"{current!r}; no fractions, no rounding)", text)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    _require(math.isfinite(value), name, f"a finite number (its default is {current!r})",
             text)
    return value


def _typed_item(name: str, item: object, kind: type, text: str) -> object:
    """One JSON array item, of the type ``kind`` that the current items share."""
    if kind is float and isinstance(item, (int, float)) and not isinstance(item, bool):
        _require(math.isfinite(item), name, "an array of finite numbers", text)
        return float(item)
    ok = isinstance(item, kind) and (kind is bool or not isinstance(item, bool))
    _require(ok, name, f"a JSON array of {kind.__name__} values", text)
    return item


def _require(ok: bool, name: str, allowed: str, text: str) -> None:
    if not ok:
        raise ValueError(f"--set {name} must be {allowed}; got {text!r}")
