# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: run test bench

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(INSTALLED)

run: $(INSTALLED)
	$(VENV)/bin/pe-jax run

test: $(INSTALLED)
	$(VENV)/bin/python -m pytest

bench: $(INSTALLED)
	$(VENV)/bin/pip install --quiet -e '.[bench]'
	$(VENV)/bin/python experiments/bench_voting.py
	$(VENV)/bin/python experiments/bench_diffusion.py
