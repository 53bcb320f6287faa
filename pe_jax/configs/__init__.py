"""Run configurations shipped with the package; each module has ``get_config()``."""
