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
``T_BY_RATE``           maximal bystander kill hazard ``k_by`` (1/s)
``T_BY_EC50``           IFN-gamma of half-maximal bystander hazard (pg/mL)
``T_BY_HILL``           Hill coefficient ``n`` of the bystander hazard
``T_DT_S``              step length in seconds
======================  ==========================================================

Rule for an alive cell, antigen-positive or negative: first the **bystander
kill** (antigen-independent killing near activated CAR-T cells: Fas/FasL and
IFN-gamma acting on the tumour and its stroma). With ``I`` the IFN-gamma at the
cell's site, the cell is killed with hazard::

    h = k_by I^n / (I^n + EC50^n)

i.e. with probability ``1 - exp(-h dt)`` this step: it turns dying (as a cell
killed by a CAR-T: timer reset, lysis below from the next step on) and does
nothing else this step. Nothing is drawn when ``h dt <= 0`` (``k_by = 0`` or no
IFN-gamma), so with ``k_by = 0`` no other draw changes. Then one uniform ``u``
decides its fate this step. Natural
death if ``u < p_d`` (removed, no damage signal); else an attempt to divide
if ``u < p_d + (1 - p_d) p_b``, i.e. with probability ``(1 - p_d) p_b``,
exactly as a death draw followed by an independent division draw, but with
one hash per cell and step instead of two (tumour cells are most of the
cells). The daughter takes a uniformly chosen free non-vessel neighbour (the
site is reserved at once, the daughter appended after the pass, its antigen
``A' = A exp(sigma_i Z)``); with no free neighbour nothing happens. A dying
cell (killed by a CAR-T or a bystander kill) ages its timer and lyses with rate
``1 / dying_time``: it is removed and its damage signal is added to the
damage field source of its site.

Streams: ``TUMOUR_DEATH`` (draw 0: the fate), ``TUMOUR_DIVIDE`` (draw 1: where),
``TUMOUR_ANTIGEN`` (draw 2: draws 0-1 belong to the set-up draw at step 0),
``TUMOUR_LYSIS`` (draw 0), ``TUMOUR_BYSTANDER`` (draw 0); all keyed by the cell id.
"""

from __future__ import annotations

import math

from abm.kernels.cells_common import (DEAD, F_DAMAGE, F_IFNG, FREE, RESERVED, TUMOUR_DYING,
                                      fires, hill, normal, pick_free, uniform)
from abm.kernels.jit import jit

T_P_DEATH = 0
T_P_DIVIDE = 1
T_P_LYSIS = 2
T_ANTIGEN_SD = 3
T_DAMAGE_SRC = 4
T_DT_H = 5
T_P_FATE = 6
T_BY_RATE = 7
T_BY_EC50 = 8
T_BY_HILL = 9
T_DT_S = 10
T_N = 11

# key tuple positions (see abm.kernels.cells_step.make_keys)
K_TUMOUR_DEATH = 0
K_TUMOUR_DIVIDE = 1
K_TUMOUR_ANTIGEN = 2
K_TUMOUR_LYSIS = 3
K_TUMOUR_BYSTANDER = 11

# per-tile counter slots
TC_LYSED = 0
TC_DIED = 1
TC_BYSTANDER = 2
TC_N = 3


@jit(inline="always")
def tumour_update(r, keys, cells, sites, fld, tp, birth_site, birth_value, tcount):
    """Advance tumour cell in row ``r`` by one step (see module docstring).

    ``cells``, ``sites``, ``fld``: :class:`abm.kernels.bundles.CellColumns`,
    :class:`~abm.kernels.bundles.SiteArrays`, :class:`~abm.kernels.bundles.FieldArrays`.

    Lysis, natural death and bystander kills are counted in
    ``tcount[TC_LYSED]``, ``tcount[TC_DIED]`` and ``tcount[TC_BYSTANDER]`` (a
    row of per-tile counters: integer counts, so the total does not depend on
    the order in which tiles are summed).
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
    k_by = tp[T_BY_RATE]
    if k_by > 0.0:
        h = k_by * hill(fld.fields[F_IFNG, site[r]], tp[T_BY_EC50], tp[T_BY_HILL])
        if fires(keys[K_TUMOUR_BYSTANDER], cid, 0, h, tp[T_DT_S]):
            phenotype[r] = TUMOUR_DYING
            timer[r] = 0.0
            tcount[TC_BYSTANDER] += 1
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
