"""Run configurations shipped with the package; each module has ``get_config()``.

``load_config`` runs a config file and applies ``key=value`` overrides; every ``pe-jax``
command that takes ``--config`` goes through it.
"""

import importlib.util
import json
import pathlib
from collections.abc import Sequence

import ml_collections

CONFIG_DIR = pathlib.Path(__file__).parent
DEFAULT_CONFIG = CONFIG_DIR / "digits.py"


def load_config(path: str | pathlib.Path, overrides: Sequence[str] = ()
                ) -> ml_collections.ConfigDict:
    """Runs ``get_config()`` from a config file, then applies ``key=value`` overrides."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError("--config must be an existing .py file with get_config(); "
                         f"got {str(path)!r}")
    spec = importlib.util.spec_from_file_location(f"pe_jax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return apply_overrides(module.get_config(), overrides)


def load_saved_config(path: str | pathlib.Path, overrides: Sequence[str] = ()
                      ) -> ml_collections.ConfigDict:
    """The ``config.json`` a run wrote (``pe-jax run --resume``), with ``key=value`` overrides."""
    path = pathlib.Path(path)
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"--resume: cannot read the run's config {str(path)!r}: {error}"
                         ) from None
    return apply_overrides(ml_collections.ConfigDict(saved), overrides)


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]
                    ) -> ml_collections.ConfigDict:
    """Sets each ``key=value`` of ``overrides`` (a JSON value, or text for str keys)."""
    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep or name not in config:
            raise ValueError(f"--set takes key=value with a key of the config "
                             f"({', '.join(sorted(config.keys()))}); got {item!r}")
        current = config[name]
        config[name] = type(current)(json.loads(text)) if not isinstance(current, str) else text
    return config
