"""The field phase: secretion, uptake and plasma exchange, then diffusion-decay.

Each step, for every species at once:

1. the pointwise ODE ``dC/dt = S - k_up C + k_ex p (C_plasma - C)`` is solved
   exactly per voxel (:func:`abm.kernels.source_sink.make_source_sink_stepper`),
   where cells have added ``S`` to ``state.sources`` and ``k_up`` to
   ``state.uptake`` during the agent phase and ``p = state.perm``;
2. diffusion is stepped by the implicit LOD solver (default) or the explicit
   sub-stepping solver.

First-order tissue decay is part of the exact pointwise solution of step 1
rather than split off into the diffusion step: with the split a uniform
source would settle ``k dt / 2`` below ``S / k`` (3.5 % for a 1 h half-life
at dt = 6 min); this way it settles exactly at ``S / k``. With the implicit
solver the two steps share the work (same scheme, same result to rounding):
step 1 visits only the sites with a source, uptake or exchange and leaves
their exact value divided by ``exp(-k dt)``, and the LOD step applies the
factor ``exp(-k dt)`` to every voxel at no extra cost, so sites where only
decay acts cost nothing in step 1 (``decay_after`` in
:func:`abm.kernels.source_sink.make_source_sink_stepper`). Step 1 also clears
``state.sources`` and ``state.uptake`` for the next step.

On a layered lattice (``lattice.patches = K > 1``) each of the K patches
diffuses on its own (no flux between layers); exchange and uptake are
pointwise, so they need nothing special, and the masses below are summed
over all patches.

The net mass moved from tissue to plasma in the patch this step is stored in
``state.scalars["exchange_<species>_pg"]`` (negative: plasma -> tissue) for
the blood model to scale by ``S = B / n_T0``; plasma concentrations are read
from ``state.scalars["plasma_<species>"]`` (pg/mL, 0 when absent).
"""

from __future__ import annotations

import numpy as np

from abm.kernels.diffusion_explicit import make_explicit_stepper
from abm.kernels.diffusion_implicit import make_field_step, make_implicit_stepper
from abm.kernels.source_sink import MASS_EXCHANGED, MASS_UPTAKE, make_source_sink_stepper
from abm.model.fields import SPECIES
from abm.process import Process


class FieldProcess(Process):
    """Steps all cytokine fields (phase ``fields``)."""

    phase = "fields"

    def __init__(self, sim):
        super().__init__(sim)
        cfg, lat = sim.config, sim.state.lattice
        sp = cfg.fields.species()
        shape = (len(SPECIES),) + lat.shape
        D = np.array([s.D_um2_s for s in sp])
        k = np.array([s.decay_per_s for s in sp])
        kex = np.array([s.exchange_per_s for s in sp])
        implicit = cfg.fields.solver == "implicit"
        make = make_implicit_stepper if implicit else make_explicit_stepper
        # implicit: decay factor applied by the LOD step, source-sink visits active sites only;
        # explicit: decay inside the source-sink step (sub-stepped decay would not commute
        # with fixed boundary values)
        # a layered lattice: K uncoupled 2D patches, no flux between layers
        self.diffuse = make(shape, lat.h_um, cfg.run.dt_s, D, k if implicit else np.zeros_like(k),
                            boundary=cfg.lattice.boundary, layered=lat.layered)
        self.source_sink = make_source_sink_stepper(shape, lat.h_um, cfg.run.dt_s, kex,
                                                    decay_per_s=k, decay_after=implicit)
        # implicit: both steps in one compiled call (same numbers)
        self.field_step = make_field_step(self.source_sink, self.diffuse) if implicit else None
        self.fixed = cfg.lattice.boundary == "fixed"
        self._mass = np.zeros((3, len(SPECIES)))
        self._plasma_keys = [f"plasma_{s}" for s in SPECIES]
        self._exchange_keys = [f"exchange_{s}_pg" for s in SPECIES]
        self._uptake_keys = [f"uptake_{s}_pg" for s in SPECIES]

    def plasma(self, state) -> np.ndarray:
        get = state.scalars.get
        return np.array([get(k, 0.0) for k in self._plasma_keys])

    def step(self, state):
        plasma = self.plasma(state)
        if self.field_step is not None:
            mass = self.field_step(state.fields, state.sources, state.uptake, state.perm, plasma,
                                   self._mass, clear=True, decayed=False,
                                   boundary_values=plasma if self.fixed else None)
        else:
            mass = self.source_sink(state.fields, state.sources, state.uptake, state.perm, plasma,
                                    self._mass, clear=True, decayed=False)
            self.diffuse(state.fields, boundary_values=plasma if self.fixed else None)
        sc = state.scalars
        for ex, up, m_ex, m_up in zip(self._exchange_keys, self._uptake_keys,
                                      mass[MASS_EXCHANGED].tolist(), mass[MASS_UPTAKE].tolist()):
            sc[ex] = m_ex
            sc[up] = m_up

    def record(self, state, row):
        flat = state.fields.reshape(len(SPECIES), -1)
        means = flat.mean(axis=1)
        for i, name in enumerate(SPECIES):
            row[f"tissue_{name}"] = float(means[i])
