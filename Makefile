# Two commands on a fresh machine:  `make demo` (the main job) and `make test` (the import
# boundary, then the whole test suite: what CI runs). `make test-fast` leaves out the tests marked
# slow (real commands end to end, training runs, long rollouts): a check in a minute or two while working.
# Each creates its own virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast bench clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	SDL_VIDEODRIVER=dummy $(BIN)/infinipaint demo --out out/demo

test: $(VENV)/.installed
	$(BIN)/lint-imports  # the world model imports nothing of Minipaint (pyproject.toml)
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not slow"

bench: $(VENV)/.installed
	$(BIN)/infinipaint bench --out out/bench

clean-venv:
	rm -rf $(VENV)
