"""Cell rules are deterministic: threads, JIT on/off, restart, row order, invariants.

The mixed scenario (24 x 24 lattice with vessels, tumour, CAR-T, residents,
entry from blood, steroids and IL-6R occupancy, rates raised so that every
rule fires within 24 steps) is run with 1 and 2 Numba threads, with every
colour class forced onto the parallel path, and with the JIT off in a
subprocess; every cell column, the occupancy, permeability, fields, sources,
uptake and scalars must agree bit for bit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from abm import cells as C
from abm.kernels import cells_common as KM
from abm.kernels import rng, streams
from abm.kernels.jit import jit
from abm.model.agents import CellRules, Extravasation, sort_by_site
from abm.build import build_simulation

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers
from helpers.cells import (DecayFields, MIXED, add_cart, make_sim,  # noqa: E402
                                mixed_scenario)

TESTS = Path(__file__).resolve().parents[1]   # tests/, where helpers live


def assert_same(a: dict, b: dict, label: str):
    assert a.keys() == b.keys()
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.shape == y.shape, f"{label}: {k} shape {x.shape} vs {y.shape}"
        if x.dtype.kind == "f":
            same = np.array_equal(x.view(np.uint64) if x.dtype == np.float64 else x,
                                  y.view(np.uint64) if y.dtype == np.float64 else y)
        else:
            same = np.array_equal(x, y)
        assert same, f"{label}: {k} differs"


@pytest.fixture(scope="module")
def reference():
    return mixed_scenario(threads=1)


@jit(cache=False)
def _keyed(seed, stream, step, cells, draw):
    key = KM.stream_key(seed, stream, step)  # as in the kernels: key stays uint64
    out = np.empty((2, cells.shape[0]))
    for i in range(cells.shape[0]):
        out[0, i] = KM.uniform(key, cells[i], draw)
        out[1, i] = KM.normal(key, cells[i], draw)
    return out


def test_keyed_draws_equal_rng_module():
    seed, step = 987654321, 17
    cells = np.array([0, 1, 5, 12345, 2**40 + 3], dtype=np.int64)
    for stream in (streams.CART_KILL, streams.TUMOUR_ANTIGEN, streams.MYELOID_DEATH):
        for draw in (0, 1, 2, 7):
            got = _keyed(seed, stream, step, cells, draw)
            assert np.array_equal(got[0], rng.uniform_array(seed, stream, step, cells, draw))
            assert np.array_equal(got[1], rng.normal_array(seed, stream, step, cells, draw))


def test_scenario_exercises_every_rule(reference):
    s = dict(zip(reference["scalar_names"], reference["scalars"]))
    for key in ("cart_entered_total", "cart_egressed_total", "cart_kills_total",
                "tumour_lysed_total", "tumour_died_total", "cart_died_total", "myeloid_died_total",
                "monocytes_recruited_total", "cart_exhausted_total", "tumour_bystander_kills_total",
                "il6_secreted_cart_pg",
                "il6_secreted_myeloid_pg", "vwf_released_pg"):
        assert s[key] > 0, key
    kind, ph = reference["kind"], reference["phenotype"]
    assert np.any((kind == C.CART) & (ph == C.CART_MEMORY))
    assert np.any((kind == C.CART) & (ph == C.CART_EXHAUSTED))
    assert np.any((kind == C.CART) & (reference["target"] >= 0))


def test_one_and_two_threads_identical(reference):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    two = mixed_scenario(threads=2)
    assert_same(reference, two, "2 threads")
    forced = mixed_scenario(threads=2, par_min=1)  # every colour class on the parallel path
    assert_same(reference, forced, "2 threads, parallel path")


def test_jit_off_identical(reference, tmp_path):
    out = tmp_path / "nojit.npz"
    code = ("import sys, numpy as np; sys.path.insert(0, %r); "
            "import helpers.cells as t; "
            "np.savez(%r, **t.mixed_scenario(checks=False))" % (str(TESTS), str(out)))
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    nojit = dict(np.load(out))
    assert_same(reference, nojit, "JIT off")


def test_restart_from_saved_state_is_identical():
    """All dynamic state is on State: copying it into a fresh run continues bit for bit."""
    procs = (Extravasation, CellRules, DecayFields)
    a = make_sim(MIXED, seed=5, processes=procs, clear=False)
    a.state.scalars.update(blood_cart_cells=3e8)
    a.run(steps=13)  # stop between housekeeping steps
    st = a.state
    saved = dict(columns={k: v.copy() for k, v in st.cells.columns().items()},
                 next_id=st.cells.next_id, fields=st.fields.copy(), sources=st.sources.copy(),
                 uptake=st.uptake.copy(), perm=st.perm.copy(), scalars=dict(st.scalars),
                 step=st.step)
    a.run(steps=15)
    b = build_simulation(a.config, seed=5, processes=list(procs), initialise=False)
    sb = b.state
    sb.cells.load_columns(saved["columns"], saved["next_id"])
    sb.fields[:] = saved["fields"]
    sb.sources[:] = saved["sources"]
    sb.uptake[:] = saved["uptake"]
    sb.perm[:] = saved["perm"]
    sb.scalars.update(saved["scalars"])
    sb.step = saved["step"]
    b.run(steps=15)
    for name, col in st.cells.columns().items():
        assert np.array_equal(col, sb.cells.columns()[name]), name
    assert np.array_equal(st.fields, sb.fields)
    assert st.scalars == sb.scalars


def test_row_order_does_not_change_results():
    """Sorting the table by site at other steps changes nothing but float tally rounding."""
    procs = (Extravasation, CellRules, DecayFields)
    runs = []
    for shuffle in (False, True):
        sim = make_sim(MIXED, seed=8, processes=procs, clear=False)
        sim.state.scalars.update(blood_cart_cells=3e8)
        for i in range(20):
            if shuffle and i % 3 == 1:
                c = sim.state.cells
                perm = np.random.default_rng(i).permutation(c.n)
                for name in C.COLUMNS:
                    col = getattr(c, name)
                    col[: c.n] = col[perm]
                c.rebuild_occupancy()
            sim.step()
        c = sim.state.cells
        sort_by_site(c)
        order = np.argsort(c.id[: c.n])
        runs.append({k: v[order] for k, v in c.columns().items()})
    for k in runs[0]:
        assert np.array_equal(runs[0][k], runs[1][k]), k


def test_invariant_checker_catches_bad_states():
    sim = make_sim({"lattice": {"shape": [12, 12], "vessel_fraction": 0.05,
                                "vessel_segment_sites": 3}})
    c, lat = sim.state.cells, sim.state.lattice
    free = np.flatnonzero((c.occ < 0) & ~lat.vessel)
    rows = add_cart(sim, free[:2])
    c.check_invariants(lat)
    c.target[rows[0]] = free[-1]  # target far away
    with pytest.raises(AssertionError, match="next to its target"):
        c.check_invariants(lat)
    c.target[rows[0]] = -1
    c.activation[rows[1]] = 1.5
    with pytest.raises(AssertionError, match="activation"):
        c.check_invariants(lat)
    c.activation[rows[1]] = 0.5
    c.occ[free[5]] = KM.RESERVED
    with pytest.raises(AssertionError, match="reserved"):
        c.check_invariants(lat)
