"""Write the golden output file ``tests/data/golden_v<schema>.h5``.

A tiny run (24 x 24 lattice, 120 tumour cells, days 0 to 3, fixed seed) of
the current model plus a marker process that logs one event per day, so
every group of the schema holds data. Key values taken from the simulation
itself (not from the file) go to ``golden_v<schema>.json`` beside it. The
file is a fixture of the *file format*: ``tests/io/test_io.py`` checks that the
reader still opens it and finds those values, so files written by this
schema version stay readable after the model and the writer change. Regenerate it only when the schema version
changes (and keep the old file as ``golden_v<old>.h5``)::

    .venv/bin/python scripts/make_golden.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from abm.config import config_from_dict  # noqa: E402
from abm.io.run import run_to_file  # noqa: E402
from abm.io.schema import SCHEMA_VERSION  # noqa: E402
from abm.model.fields import SPECIES  # noqa: E402
from abm.process import Process  # noqa: E402
from abm.build import default_processes  # noqa: E402

CONFIG = {
    "run": {"name": "golden", "seed": 20260101, "start_day": 0.0, "end_day": 3.0,
            "record_every_min": 60.0, "snapshot_every_h": 24.0, "checkpoint_every_h": 24.0},
    "lattice": {"shape": [24, 24]},
    "tumour": {"initial_cells": 120},
    "output": {"compression": 9},
}


class DailyMarker(Process):
    """Logs one event per simulated day (fixture only: fills /events)."""

    phase = "patient"

    def step(self, state):
        if state.step % 240 == 0:
            state.events.append((state.time_day, "marker", -1, f"day {state.time_day:g}"))


def main() -> Path:
    cfg = config_from_dict(CONFIG)
    data = ROOT / "tests" / "data"
    target = data / f"golden_v{SCHEMA_VERSION}.h5"
    facts: dict = {"snapshots": []}

    def remember(sim):
        """Key values taken from the simulation itself, for the reader test to compare."""
        st = sim.state
        facts["snapshots"].append({
            "time": st.time_day, "n_live_cells": int((st.cells.kind[: st.cells.n] >= 0).sum()),
            "il6_sum_float32": float(st.fields[SPECIES.index("il6")].astype(np.float32)
                                     .sum(dtype=np.float64)),
            "tumour_antigen_sum": float(st.cells.antigen[: st.cells.n][
                st.cells.kind[: st.cells.n] == 0].sum())})

    every = cfg.run.every_steps(cfg.run.snapshot_every_h * 60.0)
    with tempfile.TemporaryDirectory() as tmp:
        res = run_to_file(cfg, out_dir=tmp, processes=default_processes(cfg) + [DailyMarker],
                          extra_writers=[(every, remember)])
        data.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(res.path, target)
    sim = res.sim
    facts.update({
        "schema_version": SCHEMA_VERSION, "seed": sim.seed, "n_records": sim.n_steps // 10 + 1,
        "final_counts": sim.state.counts(), "endpoints": sim.endpoints(),
        "events": [list(e) for e in sim.state.events], "final_step": sim.state.step,
        "record_keys": sorted(sim.record_row()),
    })
    (data / f"golden_v{SCHEMA_VERSION}.json").write_text(json.dumps(facts, indent=1) + "\n")
    print(f"wrote {target} ({target.stat().st_size / 1e3:.0f} kB) and its facts (.json)")
    return target


if __name__ == "__main__":
    main()
