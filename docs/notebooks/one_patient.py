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
# # One patient
#
# Simulate the default patient (`configs/default.toml`: a CD28 product, a
# median large B-cell lymphoma burden, day -5 to 28) and plot the blood
# CAR-T count, plasma IL-6, temperature and the CRS / ICANS grades.
#
# Open as a notebook with `jupytext --to notebook one_patient.py` (or the
# Jupytext extension), or run as a script. `ABM_NOTEBOOK_SMALL=1` runs a tiny
# lattice for two days (the test suite does this); `ABM_NOTEBOOK_FIGURES=dir`
# also saves the figures there.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import abm

SMALL = os.environ.get("ABM_NOTEBOOK_SMALL") == "1"
FIGURES = os.environ.get("ABM_NOTEBOOK_FIGURES")
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "configs" / "default.toml").exists())

# %% [markdown]
# ## Run
#
# `abm.simulate` writes the run file (here to a temporary folder) and returns
# its groups as an `xarray.DataTree`. The full patient takes a few minutes.

# %%
small = {"lattice.shape": [24, 24], "tumour.initial_cells": 50, "run.start_day": -1.0} if SMALL else {}
tree = abm.simulate(ROOT / "configs" / "default.toml", seed=20261121,
                    days=2.0 if SMALL else None, **small)
tree

# %% [markdown]
# ## Time courses
#
# `tree["timeseries"]` has one record every `run.record_every_min` (dim
# `time`, days since infusion).

# %%
ts = tree["timeseries"].to_dataset()
t = ts.time.values
fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True, layout="constrained")
axes[0].semilogy(t, np.where(ts.blood_cart_per_ul > 0, ts.blood_cart_per_ul, np.nan))
axes[0].set_ylabel("blood CAR-T\n(cells/µL)")
axes[1].semilogy(t, np.where(ts.plasma_il6 > 0, ts.plasma_il6, np.nan), color="C1")
axes[1].set_ylabel("plasma IL-6\n(pg/mL)")
axes[2].plot(t, ts.temperature_c, color="C3")
axes[2].axhline(38.0, ls=":", color="C3")
axes[2].set_ylabel("temperature\n(°C)")
axes[3].step(t, ts.crs_grade, where="post", label="CRS")
axes[3].step(t, ts.icans_grade, where="post", label="ICANS")
axes[3].set_ylabel("grade (ASTCT)")
axes[3].set_xlabel("days since infusion")
axes[3].legend()
if FIGURES:
    fig.savefig(Path(FIGURES) / "one_patient.png", dpi=100)

# %% [markdown]
# ## Endpoints
#
# The file's `/endpoints` group: maximal grades, onsets (NaN: never), peaks.

# %%
ep = tree["endpoints"].to_dataset()
for name in ("crs_max_grade", "crs_onset_day", "icans_max_grade", "icans_onset_day",
             "blood_cart_peak_per_ul", "plasma_il6_peak_pg_ml", "temperature_max_c"):
    print(f"{name:24s} {float(ep[name]):.4g}")

# %% [markdown]
# The other groups: `tree["fields"]` (cytokine fields on the lattice, index
# `snapshot_time`), `tree["cells"]` (agents per snapshot,
# `analysis.cell_snapshot`), `tree["events"]` (doses and clinical events);
# `tree.attrs` holds the provenance (config, seed, versions).

# %%
il6 = tree["fields"].to_dataset().il6.isel(snapshot=-1)
fig, ax = plt.subplots(figsize=(4, 3.5), layout="constrained")
il6.plot(ax=ax)
ax.set_title(f"tissue IL-6, day {float(il6.snapshot_time):g}")
if FIGURES:
    fig.savefig(Path(FIGURES) / "one_patient_il6_field.png", dpi=100)
