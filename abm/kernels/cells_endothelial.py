"""Endothelial rule, vessel permeability, and entry of blood cells at vessel sites.

Endothelial cell at vessel site v, one step (fields in pg/mL at v)::

    IL6s  = IL-6 (1 - o)          o = IL-6R occupancy by tocilizumab (env)
    S     = 1 - (1 - H(IL6s; K_6)) (1 - H(IL-1; K_1)) (1 - H(IFNg; K_g))
    e*    = (1 - sigma) [1 - (1 - e_0)(1 - S)]      e_0 = baseline activation
    e'    = e* + (e - e*) exp(-k dt),  k = k_on (rising) or k_off

Weibel-Palade exocytosis: with probability ``1 - exp(-k_rel e' dt)`` the cell
releases the fraction ``phi`` of its store ``w`` (1 = full); the released
ANG-2 (``phi w ANG2_store``) goes to the ANG-2 source at v and VWF
(``phi w VWF_store``) to a tally. The store refills
``w' = 1 - (1 - w) exp(-k_refill dt)``. Activated cells also secrete ANG-2
continuously at ``s_a e'``.

Permeability at v (1 at rest; scales plasma exchange and cell entry)::

    perm = 1 + g_e e + g_a H(ANG-2; K_a)

With the endothelial response switched off (``EN_ENABLED = 0``) e stays 0,
nothing is released and ``perm = 1``.

Entry: a free vessel site v takes a CAR-T cell from blood with probability
``1 - exp(-lambda_T perm_v dt)`` (stream ``CART_ENTRY``), else a monocyte with
probability ``1 - exp(-lambda_M (b + e_v) dt)`` (stream ``MYELOID_RECRUIT``),
both keyed by the site index.
"""

from __future__ import annotations

from abm.kernels import streams
from abm.kernels.cells_cart import ENV_IL6R, ENV_STEROID
from abm.kernels.cells_common import (F_ANG2, F_IFNG, F_IL1, F_IL6, FREE, event_prob, fires,
                                      hill, prefetch, prefetch2, relax, stream_key, uniform)
from abm.kernels.jit import jit

EN_DT = 0                # step, s
EN_EC50_IL6 = 1          # pg/mL
EN_EC50_IL1 = 2          # pg/mL
EN_EC50_IFNG = 3         # pg/mL
EN_HILL = 4              # 1
EN_BASE = 5              # baseline activation e_0
EN_F_ON = 6              # exp(-k_on dt)
EN_F_OFF = 7             # exp(-k_off dt)
EN_RELEASE = 8           # exocytosis event rate at e = 1, 1/s
EN_RELEASE_FRAC = 9      # fraction of the store released per event
EN_F_REFILL = 10         # exp(-k_refill dt)
EN_ANG2_STORE_SRC = 11   # pg/mL/s for one step when a full store is released
EN_ANG2_STORE_PG = 12    # pg in a full store
EN_VWF_STORE_PG = 13     # pg in a full store
EN_ANG2_SECR_SRC = 14    # pg/mL/s at e = 1
EN_ANG2_SECR_PG = 15     # pg per step at e = 1
EN_PERM_GAIN_ACT = 16    # 1
EN_PERM_GAIN_ANG2 = 17   # 1
EN_PERM_EC50_ANG2 = 18   # pg/mL
EN_STEROID_MAX = 19      # 1
EN_ENABLED = 20          # 1 or 0
EN_UPT_IL6 = 21          # 1/s
EN_N = 22


@jit
def permeability(e, ang2, ep):
    """``1 + g_e e + g_a H(ANG-2; K_a)``; 1 when the response is off."""
    if ep[EN_ENABLED] == 0.0:
        return 1.0
    return (1.0 + ep[EN_PERM_GAIN_ACT] * e
            + ep[EN_PERM_GAIN_ANG2] * hill(ang2, ep[EN_PERM_EC50_ANG2], 1.0))


@jit
def update_permeability(erows, site, activation, fields, perm, ep):
    """Set ``perm`` at every vessel site from its lining's activation and local ANG-2."""
    for j in range(erows.shape[0]):
        r = erows[j]
        s = site[r]
        perm[s] = permeability(activation[r], fields[F_ANG2, s], ep)


@jit(inline="always")
def endothelial_prefetch(s, fields, sources, uptake, perm):
    """Request the site data :func:`endothelial_update` touches at site ``s`` (a cache hint only)."""
    prefetch2(fields, F_IL6, s)
    prefetch2(fields, F_IL1, s)
    prefetch2(fields, F_IFNG, s)
    prefetch2(fields, F_ANG2, s)
    prefetch2(sources, F_ANG2, s)
    prefetch2(uptake, F_IL6, s)
    prefetch(perm, s)


@jit(inline="always")
def endothelial_update(r, key, ids, site, activation, store, fields, sources, uptake, perm, ep,
                       env, vwf_out, ang2_out):
    """Advance the endothelial cell in row ``r`` by one step; see module docstring.

    The cell writes only its own row, its own site of ``sources``, ``uptake``
    and ``perm``, and its own slots of ``vwf_out`` / ``ang2_out`` (pg released
    this step), so cells can be updated in parallel without conflicts.
    Stream ``ENDOTHELIAL`` (``key``), draw 0, keyed by the cell id.
    """
    s = site[r]
    vwf_out[r] = 0.0
    ang2_out[r] = 0.0
    if ep[EN_UPT_IL6] > 0.0:
        uptake[F_IL6, s] += ep[EN_UPT_IL6]
    if ep[EN_ENABLED] == 0.0:
        activation[r] = 0.0
        perm[s] = 1.0
        return
    sigma = env[ENV_STEROID] * ep[EN_STEROID_MAX]
    n = ep[EN_HILL]
    q = 1.0 - hill(fields[F_IL6, s] * (1.0 - env[ENV_IL6R]), ep[EN_EC50_IL6], n)
    q *= 1.0 - hill(fields[F_IL1, s], ep[EN_EC50_IL1], n)
    q *= 1.0 - hill(fields[F_IFNG, s], ep[EN_EC50_IFNG], n)
    e_star = (1.0 - sigma) * (1.0 - (1.0 - ep[EN_BASE]) * q)
    e = relax(activation[r], e_star, ep[EN_F_ON], ep[EN_F_OFF])
    activation[r] = e
    w = store[r]
    released = 0.0
    if fires(key, ids[r], 0, ep[EN_RELEASE] * e, ep[EN_DT]):
        released = ep[EN_RELEASE_FRAC] * w
        w -= released
    w = 1.0 - (1.0 - w) * ep[EN_F_REFILL]
    store[r] = w
    sources[F_ANG2, s] += released * ep[EN_ANG2_STORE_SRC] + e * ep[EN_ANG2_SECR_SRC]
    ang2_out[r] = released * ep[EN_ANG2_STORE_PG] + e * ep[EN_ANG2_SECR_PG]
    vwf_out[r] = released * ep[EN_VWF_STORE_PG]
    perm[s] = permeability(e, fields[F_ANG2, s], ep)


@jit
def vessel_entry(seed, step, vsites, occ, perm, e_at_site, lam_cart, lam_mono, mono_basal, dt,
                 out):
    """Decide which free vessel sites take a blood cell this step.

    Args:
        vsites: vessel site indices (sorted).
        occ: occupancy (a site is free when ``occ == FREE``).
        perm: permeability per site.
        e_at_site: endothelial activation per site.
        lam_cart: CAR-T entry rate per vessel site at ``perm = 1`` (1/s).
        lam_mono: monocyte recruitment rate per vessel site at activation 1 (1/s).
        mono_basal: activation-equivalent recruitment of a resting vessel.
        dt: step (s).
        out: int8 per vessel site, set to 0 (none), 1 (CAR-T) or 2 (monocyte).

    Returns:
        (number of CAR-T entries, number of monocyte entries).
    """
    kc = stream_key(seed, streams.CART_ENTRY, step)
    km = stream_key(seed, streams.MYELOID_RECRUIT, step)
    nc = 0
    nm = 0
    for i in range(vsites.shape[0]):
        v = vsites[i]
        out[i] = 0
        if occ[v] != FREE:
            continue
        if lam_cart > 0.0 and uniform(kc, v, 0) < event_prob(lam_cart * perm[v], dt):
            out[i] = 1
            nc += 1
        elif lam_mono > 0.0 and uniform(km, v, 0) < event_prob(
                lam_mono * (mono_basal + e_at_site[v]), dt):
            out[i] = 2
            nm += 1
    return nc, nm
