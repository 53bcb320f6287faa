"""pe_jax: differentially private synthetic data by Private Evolution, in JAX.

Submodules load on first use, so ``import pe_jax.voting`` needs only JAX and
``import pe_jax.privacy`` only dp-accounting and NumPy.
"""

import importlib
from types import ModuleType

__version__ = "0.1.0"
__all__ = ["apis", "embeddings", "evolve", "population", "privacy", "voting"]


def __getattr__(name: str) -> ModuleType:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
