"""CAR-T cell rule (one cell, one step), called from the agent pass.

State of a CAR-T cell (cell-table columns): ``phenotype`` (naive-like,
effector, memory, exhausted), ``activation`` a in [0, 1], ``engagements`` E
(engagements since the last rest), ``divisions_left`` D, ``target`` (site of
the engaged tumour cell or -1), ``timer`` (hours in the patch), and the
costimulation signalling state: ``glycolytic`` g in [0, 1] (PI3K/Akt/mTOR
drive, strong with a CD28 domain) and ``oxidative`` o in [0, 1] (TRAF/NF-kB
drive, mitochondrial capacity, strong with a 4-1BB domain).

Both products run these rules; the costimulatory domain enters only through
the gains ``G`` and ``O`` of the signalling targets (abm/presets/costimulation.toml).

One step of length dt, in order (rates in 1/s; ``p(k) = 1 - exp(-k dt)``;
``sigma = steroid_effect * steroid_max_suppression``; ``f_x`` = exhausted
factor for exhausted cells, else 1; ``w(b, g) = b + (1 - b) g`` is the share
of a glycolysis-dependent rate that a cell with drive g reaches, ``b`` the
part that needs no glycolytic drive):

1. **Death** with rate ``mu_basal + mu_AICD w(b_AICD, g) a`` (naive-like,
   effector), ``mu_memory / (1 + c_mem o)`` (memory) or ``mu_exhausted /
   (1 + c_exh o)`` (exhausted): removed. Oxidative capacity protects resting cells.
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
   naive-like or memory cell becomes effector; ``E >= E_max (1 + c_E o)``
   makes it exhausted (terminal): oxidative capacity delays exhaustion. A
   cell that scanned a target but did not engage stops for this step's
   movement with probability ``arrest H(A)`` (the antigen "stop signal";
   ``arrest`` is 1 or 0).
5. **Signalling state**: with the step's activation a held over the step,
   ``dg/dt = k_g (G a (1 + K) / (a + K) - g)`` (the glycolytic switch
   saturates at partial activation; G at a = 1) and
   ``do/dt = k_o (O (r + (1 - r) a) - o)`` (``r``: tonic share of the
   oxidative drive), advanced exactly:
   ``x <- x* + (x - x*) exp(-k dt)``.
6. **Memory conversion**: a free effector becomes memory with rate
   ``k_mem o (1 - a)``.
7. **Division** (not exhausted, ``D > 0``) with rate
   ``[a w(b_div, g) (1 + beta H_IL) / T_div + k_homeo H_IL] (1 - sigma)`` where
   ``H_IL = c / (c + EC50_IL)`` of the local IL-7/IL-15 ``c``; the daughter
   takes a uniformly chosen free neighbour (vessel sites allowed), both cells
   keep ``D - 1``.
8. **Secretion** at the cell's site: IFN-gamma and GM-CSF at
   ``s_x a w(b_s, g) (1 - sigma) f_x``, IL-6 at ``s_IL6 a w(b_IL6, g) (1 - sigma) f_x``
   (pg/mL/s); **uptake** of IL-7/IL-15 at a first-order rate per cell (1/s).

**Expected growth** (for the patient model's rate, :mod:`abm.model.coupling`):
each cell also reports its probability of dividing this step (step 7's, 0
without a free neighbour; not reached by a cell that died or left) minus its
probability of dying (step 1's). Their sum over the cells is the step's
expected net births given the cells' states, without the noise of the draws.

Movement of free cells happens afterwards in the movement passes
(:func:`abm.kernels.cells_step.agent_step`).

Streams (keyed by cell id): ``CART_DEATH`` 0, ``CART_EGRESS`` 0, ``CART_KILL`` 0,
``CART_ENGAGE`` 0 (which neighbour), 1 (engage?) and 2 (arrest?), ``CART_PHENOTYPE`` 0 (rest)
and 1 (memory), ``CART_DIVIDE`` 0 (divide?) and 1 (where). The signalling
state is deterministic (no draws).
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
C_DEATH_EXH = 4       # 1/s at o = 0
C_DEATH_MEM = 5       # 1/s at o = 0
C_P_EGRESS = 6        # probability per step
C_KILL = 7            # 1/s
C_DETACH = 8          # 1/s
C_ENGAGE = 9          # 1/s at H = 1
C_ENG_EC50 = 10       # molecules/cell
C_ENG_HILL = 11       # 1
C_EXH_LIMIT = 12      # engagements at o = 0
C_EXH_FACTOR = 13     # 1
C_P_REST = 14         # probability per step
C_ACT_DECAY = 15      # exp(-k_a dt)
C_MEM_CONV = 16       # 1/s at o = 1, a = 0
C_DIVIDE = 17         # 1/s at a = 1, g = 1
C_IL_EC50 = 18        # pg/mL
C_IL_BOOST = 19       # 1
C_HOMEO_DIVIDE = 20   # 1/s at saturating IL-7/IL-15
C_IFNG_SRC = 21       # pg/mL/s per cell at a = 1, g = 1
C_GMCSF_SRC = 22      # pg/mL/s
C_IL6_SRC = 23        # pg/mL/s
C_IL6_PG_STEP = 24    # pg per step at a = 1, g = 1
C_IL7_UPTAKE = 25     # 1/s
C_STEROID_MAX = 26    # 1
C_ARREST = 27         # 1 or 0: stop on antigen contact
C_GLYC_GAIN = 28      # G: glycolytic target at a = 1 (costimulatory domain)
C_OXID_GAIN = 29      # O: oxidative target at a = 1 (costimulatory domain)
C_OXID_TONIC = 30     # r: share of the oxidative target held at a = 0
C_GLYC_RELAX = 31     # exp(-k_g dt)
C_OXID_RELAX = 32     # exp(-k_o dt)
C_DIV_BASAL = 33      # b_div: division share without glycolytic drive
C_SECR_BASAL = 34     # b_s: IFN-gamma / GM-CSF share without glycolytic drive
C_IL6_BASAL = 35      # b_IL6
C_AICD_BASAL = 36     # b_AICD
C_EXH_OXID = 37       # c_E: exhaustion-limit gain per unit o
C_MEM_OXID = 38       # c_mem: memory survival gain per unit o
C_EXHD_OXID = 39      # c_exh: exhausted survival gain per unit o
C_GLYC_K = 40         # K: activation constant of the glycolytic target
C_N = 41

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
def relax(x, target, decay):
    """Exact solution of ``dx/dt = k (target - x)`` over one step, ``decay = exp(-k dt)``."""
    return target + (x - target) * decay


@jit(inline="always")
def glycolytic_share(basal, g):
    """Share ``b + (1 - b) g`` of a glycolysis-dependent rate reached at glycolytic drive ``g``."""
    return basal + (1.0 - basal) * g


@jit(inline="always")
def cart_prefetch(s, fields, sources, uptake):
    """Request the field, source and uptake data :func:`cart_update` touches at site ``s`` (a cache hint only)."""
    prefetch2(fields, F_IL7_15, s)
    prefetch2(sources, F_IFNG, s)
    prefetch2(sources, F_GMCSF, s)
    prefetch2(sources, F_IL6, s)
    prefetch2(uptake, F_IL7_15, s)


@jit(inline="always")
def cart_update(r, keys, cells, sites, fld, cp, env, birth_site, events, il6_out, growth_out):
    """Advance the CAR-T cell in row ``r`` by one step (see module docstring).

    ``cells``, ``sites``, ``fld``: :class:`abm.kernels.bundles.CellColumns`,
    :class:`~abm.kernels.bundles.SiteArrays`, :class:`~abm.kernels.bundles.FieldArrays`.
    Sets ``events[r]`` (flags of this step), ``il6_out[r]`` (pg secreted) and
    ``growth_out[r]`` (the cell's expected births minus deaths this step:
    ``p_divide [a free neighbour] - p_death``, see the module docstring) afresh:
    no scratch needs clearing before the pass.
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
    glycolytic = cells.glycolytic
    oxidative = cells.oxidative
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
    g = glycolytic[r]
    o = oxidative[r]
    dt = cp[C_DT]
    sigma = env[ENV_STEROID] * cp[C_STEROID_MAX]
    exhausted = ph == CART_EXHAUSTED
    fx = cp[C_EXH_FACTOR] if exhausted else 1.0

    # 1. death
    if exhausted:
        mu = cp[C_DEATH_EXH] / (1.0 + cp[C_EXHD_OXID] * o)
    elif ph == CART_MEMORY:
        mu = cp[C_DEATH_MEM] / (1.0 + cp[C_MEM_OXID] * o)
    else:
        mu = cp[C_DEATH_BASAL] + cp[C_DEATH_AICD] * glycolytic_share(cp[C_AICD_BASAL], g) * a
    growth_out[r] = -event_prob(mu, dt)
    die = fires(keys[K_CART_DEATH], cid, 0, mu, dt)
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
                    if E >= cp[C_EXH_LIMIT] * (1.0 + cp[C_EXH_OXID] * o):
                        ph = CART_EXHAUSTED
                        exhausted = True
                        fx = cp[C_EXH_FACTOR]
                        events[r] |= EV_EXHAUSTED
                    else:
                        ph = CART_EFFECTOR
            elif cp[C_ARREST] != 0.0 and h > 0.0 and uniform(keys[K_CART_ENGAGE], cid, 2) < h:
                events[r] |= EV_ARRESTED

    # 5. signalling state follows this step's activation (deterministic)
    k_g = cp[C_GLYC_K]
    g = relax(g, cp[C_GLYC_GAIN] * a * (1.0 + k_g) / (a + k_g), cp[C_GLYC_RELAX])
    o = relax(o, cp[C_OXID_GAIN] * (cp[C_OXID_TONIC] + (1.0 - cp[C_OXID_TONIC]) * a),
              cp[C_OXID_RELAX])

    # 6. memory conversion of resting effectors
    if ph == CART_EFFECTOR and target[r] < 0:
        if fires(keys[K_CART_PHENOTYPE], cid, 1, cp[C_MEM_CONV] * o * (1.0 - a), dt):
            ph = CART_MEMORY

    # 7. division into a free neighbour
    if not exhausted and divisions_left[r] > 0:
        h_il = hill(fields[F_IL7_15, s], cp[C_IL_EC50], 1.0)
        rate = (cp[C_DIVIDE] * a * glycolytic_share(cp[C_DIV_BASAL], g)
                * (1.0 + cp[C_IL_BOOST] * h_il)
                + cp[C_HOMEO_DIVIDE] * h_il) * (1.0 - sigma)
        if rate > 0.0 and pick_free(s, neighbours, occ, vessel, True, 0.0) >= 0:
            growth_out[r] += event_prob(rate, dt)
        if fires(keys[K_CART_DIVIDE], cid, 0, rate, dt):
            d = pick_free(s, neighbours, occ, vessel, True, uniform(keys[K_CART_DIVIDE], cid, 1))
            if d >= 0:
                occ[d] = RESERVED
                birth_site[r] = d
                divisions_left[r] -= 1

    # 8. secretion and uptake at the cell's site
    f = a * (1.0 - sigma) * fx
    if f > 0.0:
        fs = f * glycolytic_share(cp[C_SECR_BASAL], g)
        f6 = f * glycolytic_share(cp[C_IL6_BASAL], g)
        sources[F_IFNG, s] += cp[C_IFNG_SRC] * fs
        sources[F_GMCSF, s] += cp[C_GMCSF_SRC] * fs
        sources[F_IL6, s] += cp[C_IL6_SRC] * f6
        il6_out[r] = cp[C_IL6_PG_STEP] * f6
    uptake[F_IL7_15, s] += cp[C_IL7_UPTAKE]

    phenotype[r] = ph
    activation[r] = a
    engagements[r] = E
    glycolytic[r] = g
    oxidative[r] = o
