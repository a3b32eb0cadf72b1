# Two commands on a fresh machine:  `make demo` (the main job) and `make test` (the import
# boundary, then the test suite).
# Each creates its own virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	SDL_VIDEODRIVER=dummy $(BIN)/infinipaint demo --out out/demo

test: $(VENV)/.installed
	$(BIN)/lint-imports  # the world model imports nothing of Minipaint (pyproject.toml)
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/infinipaint bench --out out/bench

clean-venv:
	rm -rf $(VENV)
