# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A small virtual trial
#
# `configs/batch_example.toml`: 40 virtual patients, half given a CD28 and
# half a 4-1BB product, with tumour burden, weight, lymphodepletion depth,
# CD19 density and endothelial activation drawn per patient (about 3 minutes
# on 2 cores). We run it, then tabulate the CRS and ICANS risk per product
# with 95 % Wilson intervals.
#
# `ABM_NOTEBOOK_SMALL=1` runs 4 patients on a tiny lattice for two days (the
# test suite does this); `ABM_NOTEBOOK_OUT=dir` sets where the batch folder
# goes (default `runs/`); `ABM_NOTEBOOK_FIGURES=dir` also saves the figures.

# %%
import os
from pathlib import Path

import abm
from analysis.plots import plot_grade_distribution, plot_onset

SMALL = os.environ.get("ABM_NOTEBOOK_SMALL") == "1"
FIGURES = os.environ.get("ABM_NOTEBOOK_FIGURES")
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "configs" / "default.toml").exists())
OUT = Path(os.environ.get("ABM_NOTEBOOK_OUT") or ROOT / "runs")

# %% [markdown]
# ## Run the batch
#
# `abm.run_batch` writes one file per patient to `<out>/<batch name>/` with a
# `manifest.csv` (the same folder as `abm batch`), then opens it with
# `analysis.open_batch`. `resume=True` makes a re-run of this cell reuse the
# runs already done.

# %%
small = {"batch.name": "example_small", "batch.population.size": 4, "lattice.shape": [24, 24],
         "tumour.initial_cells": 50} if SMALL else {}
trial = abm.run_batch(ROOT / "configs" / "batch_example.toml", out=OUT, resume=True,
                      workers=0 if SMALL else None, days=2.0 if SMALL else None, **small)
trial

# %% [markdown]
# ## Risk per product
#
# `trial.abm.risk(by=...)` computes the endpoints from the time series and
# gives, per group and outcome, the runs `n`, the events `k`, the risk `p`
# and its 95 % Wilson interval `lo`-`hi`.

# %%
risk = trial.abm.risk(by="product")
risk[["group", "outcome", "n", "k", "p", "lo", "hi"]].round(3)

# %% [markdown]
# ## Endpoints per patient

# %%
ep = trial.abm.endpoints()
ep.to_dataframe()[["product", "burden_cells", "crs_max_grade", "crs_onset_day",
                   "icans_max_grade", "icans_onset_day"]]

# %%
fig = plot_grade_distribution(ep, by="product")
if FIGURES:
    fig.savefig(Path(FIGURES) / "virtual_trial_grades.png", dpi=100)

# %%
fig = plot_onset(ep, by="product")
if FIGURES:
    fig.savefig(Path(FIGURES) / "virtual_trial_onset.png", dpi=100)
