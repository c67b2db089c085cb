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
# # CRS and ICANS risk versus tumour burden
#
# `configs/tumor_burden.toml`: 120 virtual patients with tumour burden drawn
# log-uniformly between 1e9 and 1e12 cells (product, dose and the other
# covariates drawn too). We look at how the risk of CRS and ICANS grows with
# burden: binned risk with Wilson intervals, a Firth logistic fit on
# log10(burden) and a trend test. The full batch takes about 10 minutes on 2
# cores; its parameters can be changed from here (overrides).
#
# `ABM_NOTEBOOK_SMALL=1` runs 6 patients on a tiny lattice for two days (the
# test suite does this; the numbers then mean nothing); `ABM_NOTEBOOK_OUT=dir`
# sets where the batch folder goes (default `runs/`); `ABM_NOTEBOOK_FIGURES=dir`
# also saves the figures.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import abm
from analysis.plots import plot_risk_vs_covariate
from analysis.risk import binned_risk, fit_logistic, trend_test

SMALL = os.environ.get("ABM_NOTEBOOK_SMALL") == "1"
FIGURES = os.environ.get("ABM_NOTEBOOK_FIGURES")
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "configs" / "default.toml").exists())
OUT = Path(os.environ.get("ABM_NOTEBOOK_OUT") or ROOT / "runs")

# %%
small = {"batch.name": "tumor_burden_small", "batch.population.size": 6,
         "lattice.shape": [24, 24], "tumour.initial_cells": 50} if SMALL else {}
batch = abm.run_batch(ROOT / "configs" / "tumor_burden.toml", out=OUT, resume=True,
                      workers=0 if SMALL else None, days=2.0 if SMALL else None, **small)
ep = batch.abm.endpoints()
print(f"{ep.sizes['run']} patients, burden {float(ep.burden_cells.min()):.2g}"
      f"-{float(ep.burden_cells.max()):.2g} cells")

# %% [markdown]
# ## Each patient
#
# Maximal CRS grade against burden, one point per patient, coloured by product.

# %%
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
for product in np.unique(ep["product"].values):
    sel = ep["product"].values == product
    ax.scatter(ep.burden_cells.values[sel], ep.crs_max_grade.values[sel], label=product, alpha=0.7)
ax.set_xscale("log")
ax.set_xlabel("tumour burden (cells)")
ax.set_ylabel("maximal CRS grade")
ax.legend(title="product")
if FIGURES:
    fig.savefig(Path(FIGURES) / "tumour_burden_points.png", dpi=100)

# %% [markdown]
# ## Binned risk and logistic fit
#
# Risk of CRS of any grade per decade of burden (Wilson 95 % intervals), and
# the Firth-penalised logistic fit `P = expit(b0 + b1 log10 burden)`, which
# stays finite when every patient of a bin, or of the batch, has the event
# (or none has).

# %%
crs = (ep.crs_max_grade >= 1).astype(float).where(ep.crs_max_grade.notnull())
binned_risk(ep.burden_cells.values, crs.values)[["lo_edge", "hi_edge", "n", "k", "p", "lo", "hi"]]

# %%
fit = fit_logistic(ep.burden_cells.values, crs.values)
if fit is not None:
    p, lo, hi = fit.predict([1e10, 1e11, 1e12])
    print(f"odds ratio per tenfold burden: {fit.odds_ratio_per_unit:.3g}")
    for burden, *risk in zip(("1e10", "1e11", "1e12"), p, lo, hi):
        print(f"risk at {burden} cells: {risk[0]:.2f} (95 % {risk[1]:.2f}-{risk[2]:.2f})")
trend = trend_test(ep.burden_cells.values, crs.values)
{k: v for k, v in trend.items() if np.isscalar(v)}

# %% [markdown]
# ## Both syndromes, grade >= 1 and >= 3
#
# `analysis.plots.plot_risk_vs_covariate` draws the same for CRS and ICANS:
# binned risk, the logistic curve with its 95 % band, and each patient as a tick.

# %%
fig = plot_risk_vs_covariate(ep, "burden_cells")
if FIGURES:
    fig.savefig(Path(FIGURES) / "tumour_burden_risk.png", dpi=100)
