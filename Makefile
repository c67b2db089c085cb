# Two-command set-up: `make run` (main job) and `make test` (test suite).
# Both create and fill a private virtual environment in .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Main job: the default virtual patient and its report, then a small virtual
# trial (configs/batch_example.toml, 12 patients) and its population report.
run: $(STAMP)
	$(BIN)/abm run configs/default.toml
	$(BIN)/abm analyze runs/default/default_seed20261121.h5
	$(BIN)/abm batch configs/batch_example.toml --resume
	$(BIN)/abm analyze runs/example

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean-venv:
	rm -rf $(VENV)
