"""Tumour cell rule (one cell, one step), called from the agent pass.

Parameter vector ``tp`` (float64, built by :func:`abm.model.tumour.kernel_params`):

======================  ==========================================================
index                   meaning
======================  ==========================================================
``T_P_DEATH``           natural death probability per step, ``1 - exp(-d dt)``
``T_P_DIVIDE``          division probability per step, ``1 - exp(-b dt)``
``T_P_FATE``            ``p_d + (1 - p_d) p_b``: death or division this step
``T_P_LYSIS``           lysis probability per step of a dying cell
``T_ANTIGEN_SD``        log-sd of the daughter's antigen noise
``T_DAMAGE_SRC``        damage source of one lysis, pg/mL/s for one step
``T_DT_H``              step length in hours
======================  ==========================================================

Rule for an alive cell: one uniform ``u`` decides its fate this step. Natural
death if ``u < p_d`` (removed, no damage signal); else an attempt to divide
if ``u < p_d + (1 - p_d) p_b``, i.e. with probability ``(1 - p_d) p_b``,
exactly as a death draw followed by an independent division draw, but with
one hash per cell and step instead of two (tumour cells are most of the
cells). The daughter takes a uniformly chosen free non-vessel neighbour (the
site is reserved at once, the daughter appended after the pass, its antigen
``A' = A exp(sigma_i Z)``); with no free neighbour nothing happens. A dying
cell (killed by a CAR-T) ages its timer and lyses with rate
``1 / dying_time``: it is removed and its damage signal is added to the
damage field source of its site.

Streams: ``TUMOUR_DEATH`` (draw 0: the fate), ``TUMOUR_DIVIDE`` (draw 1: where),
``TUMOUR_ANTIGEN`` (draw 2: draws 0-1 belong to the set-up draw at step 0),
``TUMOUR_LYSIS`` (draw 0); all keyed by the cell id.
"""

from __future__ import annotations

import math

from abm.kernels.cells_common import (DEAD, F_DAMAGE, FREE, RESERVED, TUMOUR_DYING, normal,
                                      pick_free, uniform)
from abm.kernels.jit import jit

T_P_DEATH = 0
T_P_DIVIDE = 1
T_P_LYSIS = 2
T_ANTIGEN_SD = 3
T_DAMAGE_SRC = 4
T_DT_H = 5
T_P_FATE = 6
T_N = 7

# key tuple positions (see abm.kernels.cells_step.make_keys)
K_TUMOUR_DEATH = 0
K_TUMOUR_DIVIDE = 1
K_TUMOUR_ANTIGEN = 2
K_TUMOUR_LYSIS = 3

# per-tile counter slots
TC_LYSED = 0
TC_DIED = 1
TC_N = 2


@jit(inline="always")
def tumour_update(r, keys, cells, sites, fld, tp, birth_site, birth_value, tcount):
    """Advance tumour cell in row ``r`` by one step (see module docstring).

    ``cells``, ``sites``, ``fld``: :class:`abm.kernels.bundles.CellColumns`,
    :class:`~abm.kernels.bundles.SiteArrays`, :class:`~abm.kernels.bundles.FieldArrays`.

    Lysis and natural death are counted in ``tcount[TC_LYSED]`` and
    ``tcount[TC_DIED]`` (a row of per-tile counters: integer counts, so the
    total does not depend on the order in which tiles are summed).
    """
    ids = cells.ids
    kind = cells.kind
    site = cells.site
    phenotype = cells.phenotype
    antigen = cells.antigen
    timer = cells.timer
    occ = sites.occ
    neighbours = sites.neighbours
    vessel = sites.vessel
    sources = fld.sources
    cid = ids[r]
    if phenotype[r] == TUMOUR_DYING:
        timer[r] += tp[T_DT_H]
        if uniform(keys[K_TUMOUR_LYSIS], cid, 0) < tp[T_P_LYSIS]:
            s = site[r]
            sources[F_DAMAGE, s] += tp[T_DAMAGE_SRC]
            occ[s] = FREE
            kind[r] = DEAD
            site[r] = -1
            tcount[TC_LYSED] += 1
        return
    u = uniform(keys[K_TUMOUR_DEATH], cid, 0)
    if u < tp[T_P_DEATH]:
        s = site[r]     # read only when needed: most cells neither die nor divide
        occ[s] = FREE
        kind[r] = DEAD
        site[r] = -1
        tcount[TC_DIED] += 1
        return
    timer[r] += tp[T_DT_H]
    if u < tp[T_P_FATE]:
        s = site[r]
        t = pick_free(s, neighbours, occ, vessel, False, uniform(keys[K_TUMOUR_DIVIDE], cid, 1))
        if t >= 0:
            occ[t] = RESERVED
            birth_site[r] = t
            a = antigen[r]
            if a > 0.0 and tp[T_ANTIGEN_SD] > 0.0:
                a = a * math.exp(tp[T_ANTIGEN_SD] * normal(keys[K_TUMOUR_ANTIGEN], cid, 2))
            birth_value[r] = a
