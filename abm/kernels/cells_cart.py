"""CAR-T cell rule (one cell, one step), called from the agent pass.

State of a CAR-T cell (cell-table columns): ``phenotype`` (naive-like,
effector, memory, exhausted), ``activation`` a in [0, 1], ``engagements`` E
(engagements since the last rest), ``divisions_left`` D, ``target`` (site of
the engaged tumour cell or -1), ``timer`` (hours in the patch).

One step of length dt, in order (rates in 1/s; ``p(k) = 1 - exp(-k dt)``;
``sigma = steroid_effect * steroid_max_suppression``; ``f_x`` = exhausted
factor for exhausted cells, else 1):

1. **Death** with rate ``mu_basal + mu_AICD a`` (naive-like, effector),
   ``mu_memory`` (memory) or ``mu_exhausted`` (exhausted): removed.
2. **Egress**: a cell without a target on a vessel site leaves for the blood
   with rate ``k_egress`` (removed, counted).
3. **Engaged cell**: if the target site no longer holds an alive tumour cell
   the engagement ends. Otherwise kill and detach compete, with rates
   ``k_kill (1 - sigma) f_x`` and ``k_detach``: with ``u`` uniform, a kill if
   ``u < p(k_kill + k_detach) k_kill / (k_kill + k_detach)`` (the target turns
   dying, the cell detaches), a detach without kill if ``u < p(k_kill +
   k_detach)``. An engaged cell holds ``a = 1``.
4. **Free cell**: ``a <- a exp(-k_a dt)``; rest forgives one engagement with
   rate ``k_rest`` (not for exhausted cells); the cell picks one adjacent
   alive tumour cell uniformly and engages it with probability
   ``p(k_engage H(A))``, ``H(A) = A^n / (A^n + EC50^n)`` of the target's
   antigen density A (signal 1). On engagement: ``a = 1``, ``E += 1``; a
   naive-like or memory cell becomes effector; ``E >= E_max`` makes it
   exhausted (terminal). A cell that scanned a target but did not engage
   stops for this step's movement with probability ``arrest H(A)`` (the
   antigen "stop signal"; ``arrest`` is 1 or 0).
5. **Memory conversion**: a free effector becomes memory with rate
   ``k_mem (1 - a)``.
6. **Division** (not exhausted, ``D > 0``) with rate
   ``[a (1 + beta H_IL) / T_div + k_homeo H_IL] (1 - sigma)`` where
   ``H_IL = c / (c + EC50_IL)`` of the local IL-7/IL-15 ``c``; the daughter
   takes a uniformly chosen free neighbour (vessel sites allowed), both cells
   keep ``D - 1``.
7. **Secretion** at the cell's site: IFN-gamma, GM-CSF and IL-6 at
   ``s_x a (1 - sigma) f_x`` (pg/mL/s); **uptake** of IL-7/IL-15 at a first-order
   rate per cell (1/s).

Movement of free cells happens afterwards in the movement passes
(:func:`abm.kernels.cells_step.agent_step`).

Streams (keyed by cell id): ``CART_DEATH`` 0, ``CART_EGRESS`` 0, ``CART_KILL`` 0,
``CART_ENGAGE`` 0 (which neighbour), 1 (engage?) and 2 (arrest?), ``CART_PHENOTYPE`` 0 (rest)
and 1 (memory), ``CART_DIVIDE`` 0 (divide?) and 1 (where).
"""

from __future__ import annotations

import numpy as np

from abm.kernels.cells_common import (CART_EFFECTOR, CART_EXHAUSTED, CART_MEMORY, DEAD,
                                      EV_ARRESTED, EV_CART_DIED, EV_EGRESS, EV_ENGAGED,
                                      EV_EXHAUSTED, EV_KILL,
                                      F_GMCSF, F_IFNG, F_IL6, F_IL7_15, FREE, RESERVED, TUMOUR,
                                      TUMOUR_ALIVE, TUMOUR_DYING, event_prob, fires, hill, nth_set_bit,
                                      pick_free,
                                      prefetch2, uniform)
from abm.kernels.jit import jit

C_DT = 0              # step, s
C_DT_H = 1            # step, h
C_DEATH_BASAL = 2     # 1/s
C_DEATH_AICD = 3      # 1/s at a = 1
C_P_DEATH_EXH = 4     # probability per step
C_P_DEATH_MEM = 5     # probability per step
C_P_EGRESS = 6        # probability per step
C_KILL = 7            # 1/s
C_DETACH = 8          # 1/s
C_ENGAGE = 9          # 1/s at H = 1
C_ENG_EC50 = 10       # molecules/cell
C_ENG_HILL = 11       # 1
C_EXH_LIMIT = 12      # engagements
C_EXH_FACTOR = 13     # 1
C_P_REST = 14         # probability per step
C_ACT_DECAY = 15      # exp(-k_a dt)
C_MEM_CONV = 16       # 1/s
C_DIVIDE = 17         # 1/s at a = 1
C_IL_EC50 = 18        # pg/mL
C_IL_BOOST = 19       # 1
C_HOMEO_DIVIDE = 20   # 1/s at saturating IL-7/IL-15
C_IFNG_SRC = 21       # pg/mL/s per cell at a = 1
C_GMCSF_SRC = 22      # pg/mL/s
C_IL6_SRC = 23        # pg/mL/s
C_IL6_PG_STEP = 24    # pg per step at a = 1
C_IL7_UPTAKE = 25     # 1/s
C_STEROID_MAX = 26    # 1
C_ARREST = 27         # 1 or 0: stop on antigen contact
C_N = 28

# key tuple positions (see abm.kernels.cells_step.make_keys)
K_CART_DEATH = 4
K_CART_EGRESS = 5
K_CART_KILL = 6
K_CART_ENGAGE = 7
K_CART_PHENOTYPE = 8
K_CART_DIVIDE = 9

# environment vector positions (shared with the other rules)
ENV_STEROID = 0
ENV_IL6R = 1
ENV_N = 2


@jit(inline="always")
def cart_prefetch(s, fields, sources, uptake):
    """Request the field, source and uptake data :func:`cart_update` touches at site ``s`` (a cache hint only)."""
    prefetch2(fields, F_IL7_15, s)
    prefetch2(sources, F_IFNG, s)
    prefetch2(sources, F_GMCSF, s)
    prefetch2(sources, F_IL6, s)
    prefetch2(uptake, F_IL7_15, s)


@jit(inline="always")
def cart_update(r, keys, cells, sites, fld, cp, env, birth_site, events, il6_out):
    """Advance the CAR-T cell in row ``r`` by one step (see module docstring).

    ``cells``, ``sites``, ``fld``: :class:`abm.kernels.bundles.CellColumns`,
    :class:`~abm.kernels.bundles.SiteArrays`, :class:`~abm.kernels.bundles.FieldArrays`.
    Sets ``events[r]`` (flags of this step) and ``il6_out[r]`` (pg secreted)
    afresh: no scratch needs clearing before the pass.
    """
    ids = cells.ids
    kind = cells.kind
    site = cells.site
    phenotype = cells.phenotype
    activation = cells.activation
    antigen = cells.antigen
    engagements = cells.engagements
    divisions_left = cells.divisions_left
    target = cells.target
    timer = cells.timer
    occ = sites.occ
    neighbours = sites.neighbours
    vessel = sites.vessel
    fields = fld.fields
    sources = fld.sources
    uptake = fld.uptake
    events[r] = 0
    il6_out[r] = 0.0
    cid = ids[r]
    s = site[r]
    ph = phenotype[r]
    a = activation[r]
    dt = cp[C_DT]
    sigma = env[ENV_STEROID] * cp[C_STEROID_MAX]
    exhausted = ph == CART_EXHAUSTED
    fx = cp[C_EXH_FACTOR] if exhausted else 1.0

    # 1. death
    if exhausted:
        die = uniform(keys[K_CART_DEATH], cid, 0) < cp[C_P_DEATH_EXH]
    elif ph == CART_MEMORY:
        die = uniform(keys[K_CART_DEATH], cid, 0) < cp[C_P_DEATH_MEM]
    else:
        die = fires(keys[K_CART_DEATH], cid, 0, cp[C_DEATH_BASAL] + cp[C_DEATH_AICD] * a, dt)
    if die:
        occ[s] = FREE
        kind[r] = DEAD
        site[r] = -1
        target[r] = -1
        events[r] |= EV_CART_DIED
        return

    # 2. egress through a vessel site
    t = target[r]
    if t < 0 and vessel[s]:
        if uniform(keys[K_CART_EGRESS], cid, 0) < cp[C_P_EGRESS]:
            occ[s] = FREE
            kind[r] = DEAD
            site[r] = -1
            events[r] |= EV_EGRESS
            return

    timer[r] += cp[C_DT_H]
    E = engagements[r]

    # 3. engaged: kill or detach
    if t >= 0:
        j = occ[t]
        if j < 0 or kind[j] != TUMOUR or phenotype[j] != TUMOUR_ALIVE:
            t = -1
            target[r] = -1
        else:
            a = 1.0
            k_kill = cp[C_KILL] * (1.0 - sigma) * fx
            k_tot = k_kill + cp[C_DETACH]
            if k_tot > 0.0:
                p_any = event_prob(k_tot, dt)
                u = uniform(keys[K_CART_KILL], cid, 0)
                if u < p_any * (k_kill / k_tot):
                    phenotype[j] = TUMOUR_DYING
                    timer[j] = 0.0
                    target[r] = -1
                    events[r] |= EV_KILL
                elif u < p_any:
                    target[r] = -1
    else:
        # 4. free: activation decays, rest, try to engage one adjacent target
        a = a * cp[C_ACT_DECAY]
        if E > 0 and not exhausted and uniform(keys[K_CART_PHENOTYPE], cid, 0) < cp[C_P_REST]:
            E -= 1
        # alive tumour neighbours as a bit mask (one pass, no data-dependent
        # branch: outside neighbours read occ[-1] / kind[-1], valid, masked off)
        mask = 0
        count = 0
        for k in range(neighbours.shape[1]):
            q = neighbours[s, k]
            j = occ[q]
            ok = (q >= 0) & (j >= 0) & (kind[j] == TUMOUR) & (phenotype[j] == TUMOUR_ALIVE)
            mask |= np.int64(ok) << k
            count += np.int64(ok)
        if count > 0:
            pick = int(uniform(keys[K_CART_ENGAGE], cid, 0) * count)
            q_pick = neighbours[s, nth_set_bit(mask, pick)]
            j_pick = occ[q_pick]
            h = hill(antigen[j_pick], cp[C_ENG_EC50], cp[C_ENG_HILL])
            if fires(keys[K_CART_ENGAGE], cid, 1, cp[C_ENGAGE] * h, dt):
                target[r] = q_pick
                a = 1.0
                E += 1
                events[r] |= EV_ENGAGED
                if not exhausted:
                    if E >= cp[C_EXH_LIMIT]:
                        ph = CART_EXHAUSTED
                        exhausted = True
                        fx = cp[C_EXH_FACTOR]
                        events[r] |= EV_EXHAUSTED
                    else:
                        ph = CART_EFFECTOR
            elif cp[C_ARREST] != 0.0 and h > 0.0 and uniform(keys[K_CART_ENGAGE], cid, 2) < h:
                events[r] |= EV_ARRESTED

    # 5. memory conversion of resting effectors
    if ph == CART_EFFECTOR and target[r] < 0:
        if fires(keys[K_CART_PHENOTYPE], cid, 1, cp[C_MEM_CONV] * (1.0 - a), dt):
            ph = CART_MEMORY

    # 6. division into a free neighbour
    if not exhausted and divisions_left[r] > 0:
        h_il = hill(fields[F_IL7_15, s], cp[C_IL_EC50], 1.0)
        rate = (cp[C_DIVIDE] * a * (1.0 + cp[C_IL_BOOST] * h_il)
                + cp[C_HOMEO_DIVIDE] * h_il) * (1.0 - sigma)
        if fires(keys[K_CART_DIVIDE], cid, 0, rate, dt):
            d = pick_free(s, neighbours, occ, vessel, True, uniform(keys[K_CART_DIVIDE], cid, 1))
            if d >= 0:
                occ[d] = RESERVED
                birth_site[r] = d
                divisions_left[r] -= 1

    # 7. secretion and uptake at the cell's site
    f = a * (1.0 - sigma) * fx
    if f > 0.0:
        sources[F_IFNG, s] += cp[C_IFNG_SRC] * f
        sources[F_GMCSF, s] += cp[C_GMCSF_SRC] * f
        sources[F_IL6, s] += cp[C_IL6_SRC] * f
        il6_out[r] = cp[C_IL6_PG_STEP] * f
    uptake[F_IL7_15, s] += cp[C_IL7_UPTAKE]

    phenotype[r] = ph
    activation[r] = a
    engagements[r] = E
