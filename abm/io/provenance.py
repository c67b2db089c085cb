"""Provenance: what made a file (software, config, seed, environment, wall times).

Root attributes of every output file (all text or numbers):

================== ==============================================================
schema_version     layout version (:data:`abm.io.schema.SCHEMA_VERSION`)
software           ``"abm"``; software_version: ``abm.__version__``
title, Conventions human-readable title; ``"CF-1.10"``
source, history    the model that wrote the file; when and by what it was written
run_name           ``run.name`` of the config
seed               run seed (drawn and recorded when the config has none)
replicate          ``run.replicate``
config_toml        the fully resolved config as TOML (every parameter)
config_json        the same as JSON (what a restart reads back)
covariates         the ``patient`` section as JSON (plus the product preset)
start_day, end_day first and last day of the run (relative to infusion)
dt_min, n_steps    step length and number of steps of the whole run
env_*              python, numpy, numba, h5py, hdf5 versions, numba threads,
                   JIT on/off, platform, machine
created            UTC time the file was started
finished           UTC time it was completed (empty until then)
restarts           JSON list of {"from_step", "at"}: resumes of this file
wall_setup_s       building the simulation (lattice, initial state)
wall_compile_s     the first step of the (last) session: JIT compile or cache load
wall_simulate_s    all other steps
wall_write_s       time-series, snapshots, checkpoints, final write (the simulation's
                   thread: handing data to the writer thread, waiting for it)
wall_write_background_s   the writer thread's own time on the file (concurrent)
wall_record_s      computing the time-series records (Simulation.record_row)
wall_total_s       wall time of the (last) session
numba_cache_hits / numba_cache_misses   compiled functions loaded / compiled
steps_done         steps simulated so far; days_simulated: steps_done x dt
complete           1 once the run finished and the file was renamed, else 0
================== ==============================================================
"""

from __future__ import annotations

import datetime as _dt
import json
import platform

import h5py
import numba
import numpy as np

from abm.version import __version__
from abm.config import Config, to_json, to_toml
from abm.io.schema import CONVENTIONS, SCHEMA_VERSION


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def environment() -> dict[str, object]:
    """Versions and machine facts that can change a run's speed or results."""
    from abm.kernels.jit import JIT_DISABLED
    return {
        "env_python": platform.python_version(),
        "env_numpy": np.__version__,
        "env_numba": numba.__version__,
        "env_h5py": h5py.__version__,
        "env_hdf5": h5py.version.hdf5_version,
        "env_numba_threads": 1 if JIT_DISABLED else int(numba.get_num_threads()),
        "env_jit_disabled": int(bool(JIT_DISABLED)),
        "env_platform": platform.platform(),
        "env_machine": platform.machine(),
    }


def covariates(config: Config) -> str:
    """Patient covariates as JSON (the patient section, plus the product preset and dose)."""
    d = dict(config.patient.to_dict())
    d["burden_cells"] = config.patient.burden_cells
    d["product_preset"] = config.product.preset
    d["dose_cells"] = config.product.dose_cells
    return json.dumps(d, sort_keys=True)


def provenance_attrs(config: Config, seed: int) -> dict[str, object]:
    """Root attributes written when a file is created."""
    r = config.run
    created = utc_now()
    attrs: dict[str, object] = {
        "schema_version": np.int32(SCHEMA_VERSION),
        "software": "abm",
        "software_version": __version__,
        "title": f"CAR-T agent-based model run '{r.name}' (seed {seed})",
        "Conventions": CONVENTIONS,
        "source": f"cart-abm {__version__}: stochastic agent-based model of CAR-T therapy",
        "history": f"{created} written by abm {__version__} (run '{r.name}', seed {seed})",
        "run_name": r.name,
        "seed": np.int64(seed),
        "replicate": np.int64(r.replicate),
        "config_toml": to_toml(config),
        "config_json": to_json(config),
        "covariates": covariates(config),
        "start_day": float(r.start_day),
        "end_day": float(r.end_day),
        "dt_min": float(r.dt_min),
        "n_steps": np.int64(r.n_steps),
        "created": created,
        "finished": "",
        "restarts": "[]",
        "steps_done": np.int64(0),
        "days_simulated": 0.0,
        "complete": np.int8(0),
    }
    attrs.update(environment())
    return attrs
