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


def load_config(path: str | pathlib.Path, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Runs ``get_config()`` from a config file, then applies ``key=value`` overrides."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"--config must be an existing .py file with get_config(); got {str(path)!r}")
    spec = importlib.util.spec_from_file_location(f"pe_jax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep or name not in config:
            raise ValueError(f"--set takes key=value with a key of the config "
                             f"({', '.join(sorted(config.keys()))}); got {item!r}")
        current = config[name]
        config[name] = type(current)(json.loads(text)) if not isinstance(current, str) else text
    return config
