"""Monocyte / macrophage rule (one cell, one step), called from the agent pass.

Activation ``m`` relaxes exactly toward a target set by the local fields
(pg/mL) at the cell's site::

    S     = 1 - (1 - H(IFNg; EC50_g)) (1 - H(GM-CSF; EC50_gm))
              (1 - H(IL-1; EC50_1)) (1 - H(damage; EC50_d))
    m*    = (1 - sigma) S,  sigma = steroid_effect * steroid_max_suppression
    m'    = m* + (m - m*) exp(-k dt),  k = k_on if m* > m else k_off

with ``H(c; K) = c^n / (c^n + K^n)`` (one Hill coefficient n). With only
IFN-gamma present the steady state is ``m = H(IFNg; EC50_g)``.

Then, in order: death with rate ``mu_0 + mu_act m`` (removed; turnover);
secretion of IL-6 and IL-1 at ``s_6 m`` and ``s_1 m`` (pg/mL/s) at the site;
first-order uptake of IFN-gamma and GM-CSF (receptor-mediated, 1/s).
Movement happens in the movement passes.

Stream: ``MYELOID_DEATH`` draw 0, keyed by the cell id.
"""

from __future__ import annotations

from abm.kernels.cells_common import (DEAD, EV_MYELOID_DIED, F_DAMAGE, F_GMCSF, F_IFNG, F_IL1,
                                      F_IL6, FREE, fires, hill, prefetch2, relax)
from abm.kernels.cells_cart import ENV_STEROID
from abm.kernels.jit import jit

M_DT = 0             # step, s
M_DT_H = 1           # step, h
M_EC50_IFNG = 2      # pg/mL
M_EC50_GMCSF = 3     # pg/mL
M_EC50_IL1 = 4       # pg/mL
M_EC50_DAMAGE = 5    # pg/mL
M_HILL = 6           # 1
M_F_ON = 7           # exp(-k_on dt)
M_F_OFF = 8          # exp(-k_off dt)
M_DEATH = 9          # 1/s
M_DEATH_ACT = 10     # 1/s at m = 1
M_IL6_SRC = 11       # pg/mL/s per cell at m = 1
M_IL1_SRC = 12       # pg/mL/s per cell at m = 1
M_IL6_PG_STEP = 13   # pg per step at m = 1
M_UPT_IFNG = 14      # 1/s
M_UPT_GMCSF = 15     # 1/s
M_STEROID_MAX = 16   # 1
M_N = 17

K_MYELOID_DEATH = 10


@jit(inline="always")
def myeloid_activation_target(fields, s, mp, sigma):
    """``m* = (1 - sigma) S`` from the fields at site ``s`` (see module docstring)."""
    n = mp[M_HILL]
    q = (1.0 - hill(fields[F_IFNG, s], mp[M_EC50_IFNG], n))
    q *= (1.0 - hill(fields[F_GMCSF, s], mp[M_EC50_GMCSF], n))
    q *= (1.0 - hill(fields[F_IL1, s], mp[M_EC50_IL1], n))
    q *= (1.0 - hill(fields[F_DAMAGE, s], mp[M_EC50_DAMAGE], n))
    return (1.0 - sigma) * (1.0 - q)


@jit(inline="always")
def myeloid_prefetch(s, fields, sources, uptake):
    """Request the site data :func:`myeloid_update` touches at site ``s`` (a cache hint only)."""
    prefetch2(fields, F_IFNG, s)
    prefetch2(fields, F_GMCSF, s)
    prefetch2(fields, F_IL1, s)
    prefetch2(fields, F_DAMAGE, s)
    prefetch2(sources, F_IL6, s)
    prefetch2(sources, F_IL1, s)
    prefetch2(uptake, F_IFNG, s)
    prefetch2(uptake, F_GMCSF, s)


@jit(inline="always")
def myeloid_update(r, keys, ids, kind, site, activation, timer, occ, fields, sources, uptake,
                   mp, env, events, il6_out):
    """Advance the myeloid cell in row ``r`` by one step (see module docstring).

    Sets ``events[r]`` and ``il6_out[r]`` afresh (as :func:`abm.kernels.cells_cart.cart_update`).
    """
    events[r] = 0
    il6_out[r] = 0.0
    s = site[r]
    sigma = env[ENV_STEROID] * mp[M_STEROID_MAX]
    m = relax(activation[r], myeloid_activation_target(fields, s, mp, sigma),
              mp[M_F_ON], mp[M_F_OFF])
    if fires(keys[K_MYELOID_DEATH], ids[r], 0, mp[M_DEATH] + mp[M_DEATH_ACT] * m, mp[M_DT]):
        occ[s] = FREE
        kind[r] = DEAD
        site[r] = -1
        events[r] = EV_MYELOID_DIED
        return
    activation[r] = m
    timer[r] += mp[M_DT_H]
    if m > 0.0:
        sources[F_IL6, s] += mp[M_IL6_SRC] * m
        sources[F_IL1, s] += mp[M_IL1_SRC] * m
        il6_out[r] = mp[M_IL6_PG_STEP] * m
    uptake[F_IFNG, s] += mp[M_UPT_IFNG]
    uptake[F_GMCSF, s] += mp[M_UPT_GMCSF]
