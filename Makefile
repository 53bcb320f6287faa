# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: run test bench

$(INSTALLED): pyproject.toml
	@echo "Setting up $(VENV) (first run only: installs JAX, Flax and the rest; a few minutes)..."
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --progress-bar off -e '.[test]'
	touch $(INSTALLED)
	@echo "Set-up done."

run: $(INSTALLED)
	$(VENV)/bin/pe-jax run

test: $(INSTALLED)
	$(VENV)/bin/python -m pytest

bench: $(INSTALLED)
	$(VENV)/bin/pip install --quiet -e '.[bench]'
	$(VENV)/bin/python experiments/bench_voting.py
	$(VENV)/bin/python experiments/bench_diffusion.py
