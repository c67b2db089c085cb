# Two-command set-up: `make run` (main job) and `make test` (test suite).
# Both create and fill a private virtual environment in .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench validate trials burden figures figures-patient docs clean-venv

# Installation ends by compiling the kernels (15-25 s, once): the first run loads them.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/abm compile configs/default.toml
	touch $(STAMP)

# Main job: the default virtual patient and its report, then a small mixed
# virtual trial (configs/batch_example.toml, 40 patients, CD28 and 4-1BB) and
# its population report.
run: $(STAMP)
	$(BIN)/abm run configs/default.toml
	$(BIN)/abm analyze runs/default/default_seed20261121.h5
	$(BIN)/abm batch configs/batch_example.toml --resume
	$(BIN)/abm analyze runs/example

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The two ~100-patient virtual trials and their comparison report (~15 min).
trials: $(STAMP)
	$(BIN)/abm batch configs/trial_cd28.toml --resume
	$(BIN)/abm batch configs/trial_41bb.toml --resume
	$(BIN)/abm analyze runs/trial_cd28 runs/trial_41bb --out runs/trials_report

# Risk versus tumour burden (120 patients, ~8 min) with its trend tests.
burden: $(STAMP)
	$(BIN)/abm batch configs/tumor_burden.toml --resume
	$(BIN)/abm analyze runs/tumor_burden

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The eight mechanisms of docs/model.md section 10 at the defaults (170 runs, ~11 min;
# docs/validation.md); results in runs/validate_mechanisms/.
validate: $(STAMP)
	$(BIN)/python -m validation mechanisms

# Every figure in docs/figures/ from the runs that make it (patient, trials,
# burden explorer, mechanism validation: ~40 min on 2 cores; docs/figures.md).
# `make figures-patient` redraws only the two default-patient figures (~2 min).
figures: $(STAMP)
	$(BIN)/python scripts/make_figures.py

figures-patient: $(STAMP)
	$(BIN)/python scripts/make_figures.py patient

# docs/parameter_table.md from the parameter schema.
docs: $(STAMP)
	$(BIN)/python scripts/make_docs.py

clean-venv:
	rm -rf $(VENV)
