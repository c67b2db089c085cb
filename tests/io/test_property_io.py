"""Property test of the output file: what a run writes is what :mod:`analysis.io` reads back.

A test process scripts random time-series values (floats with NaN, infinities
and -0.0, 64-bit integers, flags, keys that appear late or skip records),
events and endpoints into a tiny run written by :func:`abm.io.run.run_to_file`;
the readers of :mod:`analysis.io` must return them bit for bit (NaN payloads
included), with the writer's fill value where a record lacks a key.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from abm.config import config_from_dict
from abm.io.run import run_to_file
from abm.io.schema import is_grade
from abm.io.writer import _INT_FILL
from abm.process import Process
from analysis.io import open_group, open_run

#: Six hourly steps on an 8x8 patch, no snapshots: a run costs a fraction of a second.
CONFIG = config_from_dict({
    "run": {"name": "prop", "seed": 5, "start_day": 0.0, "end_day": 0.25, "dt_min": 60.0,
            "record_every_min": 60.0, "snapshot_every_h": 6.0, "checkpoint_every_h": 6.0},
    "lattice": {"shape": [8, 8], "vessel_segment_sites": 4},
    "tumour": {"initial_cells": 4},
    "output": {"fields": False, "cells": False},
})
N_RECORDS = CONFIG.run.n_steps + 1   # one at step 0, then one per step

# Keys of their own ("p_" prefix): the model's keys (time, step, n_*, final_n_*) stay apart.
# Names ending in "grade" are grades, stored as int8 0..5 (abm.io.schema.is_grade): not here.
keys = st.from_regex(r"p_[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(lambda k: not is_grade(k))
int64s = st.integers(-2**63, 2**63 - 1)
# every float, NaN with any payload and sign included
floats = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)
# HDF5 strings end at a NUL and hold UTF-8 (no lone surrogates)
text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
SCALARS = {float: floats, int: int64s, bool: st.booleans()}


@st.composite
def series(draw):
    """``{key: (type, [value or None per record])}``; None: the record lacks the key."""
    out = {}
    for key in draw(st.lists(keys, max_size=5, unique=True)):
        kind = draw(st.sampled_from(list(SCALARS)))
        out[key] = kind, draw(st.lists(st.none() | SCALARS[kind], min_size=N_RECORDS,
                                       max_size=N_RECORDS))
    return out


# a process steps at state.step = 0 .. n_steps - 1
events = st.lists(st.tuples(st.integers(0, N_RECORDS - 2),
                            st.tuples(floats, text, st.integers(-2**15, 2**15 - 1), text)),
                  max_size=6).map(lambda evs: sorted(evs, key=lambda e: e[0]))
endpoints = st.dictionaries(keys, st.one_of(floats, int64s, st.booleans(), text), max_size=5)


def scripted(script):
    """A process that records, logs and reports exactly what ``script`` says."""

    class Scripted(Process):
        phase = "patient"

        def step(self, state):
            state.events.extend(ev for step, ev in script["events"] if step == state.step)

        def record(self, state, row):
            for key, (_, values) in script["series"].items():
                if values[state.step] is not None:
                    row[key] = values[state.step]

        def endpoints(self, state, out):
            out.update(script["endpoints"])

    return Scripted


def bits(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).view(np.int64)


def expected_column(kind, values) -> np.ndarray:
    if kind is float:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    dtype = np.int8 if kind is bool else np.int64
    return np.array([_INT_FILL.astype(dtype) if v is None else v for v in values], dtype=dtype)


@given(script=st.fixed_dictionaries({"series": series(), "events": events,
                                     "endpoints": endpoints}),
       flush_every_s=st.sampled_from([0.0, 10.0]))
def test_written_run_reads_back_bit_for_bit(tmp_path_factory, script, flush_every_s):
    out_dir = tmp_path_factory.mktemp("prop_io")
    result = run_to_file(CONFIG, out_dir=out_dir, processes=[scripted(script)],
                         flush_every_s=flush_every_s, log=lambda _msg: None)

    ds = open_run(result.path)
    assert ds.sizes["time"] == N_RECORDS
    assert np.array_equal(ds["step"].values, np.arange(N_RECORDS))
    for key, (kind, values) in script["series"].items():
        if all(v is None for v in values):
            assert key not in ds
            continue
        want = expected_column(kind, values)
        got = ds[key].values
        assert got.dtype == want.dtype, key
        if kind is float:
            assert np.array_equal(bits(got), bits(want)), key
        else:
            assert np.array_equal(got, want), key

    for key, value in script["endpoints"].items():
        got = ds.attrs[f"endpoint_{key}"]
        if isinstance(value, float):
            assert bits(got) == bits(value), key
        else:   # flags come back as 0 / 1
            assert type(got) is (int if isinstance(value, bool) else type(value)), key
            assert got == value, key

    ev = open_group(result.path, "events", load=True)
    logged = [e for _, e in script["events"]]
    assert ev.sizes.get("event", 0) == len(logged)
    assert np.array_equal(bits(ev["time"].values), bits([e[0] for e in logged]))
    assert [str(k) for k in ev["kind"].values] == [e[1] for e in logged]
    assert ev["grade"].values.tolist() == [e[2] for e in logged]
    assert [str(d) for d in ev["detail"].values] == [e[3] for e in logged]
