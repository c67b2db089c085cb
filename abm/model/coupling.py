"""Restriction: per-capita rates measured in the tissue patches, for the whole patient.

The K patches are samples of the tumour bed (each ``n_T0`` tumour cells at
start); the whole tumour holds ``B`` cells, so the bed is
``S_v = B / (K n_T0)`` times the patches' volume. Patch events are never
multiplied by ``S_v`` one by one (that would multiply their noise by ``S_v``,
``var(S_v X) = S_v^2 lambda`` where the bed's real sum has ``S_v lambda``).
Instead each step the patches report counts, and this module keeps
exponential moving averages, with time constant ``tau = coupling.window_h``,
of numerators and denominators pooled over all patches::

    kill hazard per target cell   kappa = <kills> / <alive antigen-positive tumour cells * dt>
    bystander hazard per cell     kappa_by = <bystander kills> / <alive tumour cells * dt>
    tumour net growth             g_T   = <d alive + kills + bystander kills> / <alive * dt>
    CAR-T net proliferation       r_C   = <sum_i (p_div,i - p_die,i)> / <N_C * dt>
    CAR-T egress                  eps   = <egressed> / <N_C * dt>
        (N_C = the CAR-T the agent phase acted on: those after the last step plus this
        step's entrants, who enter before it and may die, divide or leave in the same
        step; p_div,i and p_die,i the probabilities of cell i dividing and dying this
        step, from its state: the expected net births, not the realised ones)
    exhausted share               x     = <exhausted> / <N_C>
    potential of egressing cells  m_e   = <divisions left of egressed> / <egressed>
    patch CAR-T per patch         Nbar  = <N_C> / K

(``<.>`` the moving average; a ratio of averages is the windowed rate, not an
average of noisy per-step ratios).

Why the CAR-T growth is the expected, not the realised, count: the patient's
pool is the sum over ``S_v`` patch-sized regions, so it must grow as the
*expected* patch count, ``E[N(t)] = N_0 exp((b - d) t)``. Early on the patches
hold a handful of cells, and any function of the realised events carries their
noise into an exponent: with the linear increments ``dN / N`` the pool grows by
``exp(sum dN / N)``, on average more than the patch (from one cell to ``N``
by births: ``exp(H_(N-1)) ~ 1.78 N``); with log increments and a half-cell offset
(``ln((N' + 1/2) / (N + 1/2))``, the estimator before) by less (1 to 2 cells
counts 0.51 instead of 0.69). In the default patient either left the pool a
factor 0.63 or 1.36 away from its own patch for the rest of the run. The
cells' division and death probabilities are known before the draws; their sum
has the right expectation and none of the draws' noise. Both kinds of kill are added back into
``g_T``: it is the growth the tumour would have without them, and the patient
model takes the kills off again at the patient's CAR-T density. A rate whose
denominator is still empty (no CAR-T yet) takes its prior:
``r_C = -product.basal_death_per_day``, ``eps = 0``, ``kappa = kappa_by = 0``.

The patient's tumour CAR-T ``C_T`` (smooth, :mod:`abm.model.kinetics`) and the
patches' CAR-T differ by sampling noise. The tumour's per-cell kill hazards
(``kappa``, and ``kappa_by``, which follows the IFN-gamma of activated CAR-T)
and its CAR-T-driven cytokine output act in proportion to the local CAR-T
density, so they are re-weighted to the patient's density by the ratio
estimator::

    rho = (C_T / (S_v K) + c0) / (Nbar + c0)          (coupling.cart_lift = "total")
    rho = (C_T / (S_v K)) / max(Nbar, c0)            (coupling.cart_lift = "per_patch")

with ``c0 = coupling.pseudo_count_cells`` (one cell) so that an empty patch
does not divide by zero; ``rho = 1`` when the patches hold exactly the
patient's density. With the per-patch lift, when the patient's share per
patch is under one cell the patches keep one test cell each
(:mod:`abm.model.relift`) and ``rho`` is the share: the test cell's kills
and cytokines count for the fraction of a cell it stands for, its per-capita
rates as they are (the pseudo-count form would weigh it by up to
``1 / (2 share)`` too much).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abm.kernels.tallies import patch_counts as _patch_counts
from abm.schema import Section, param


@dataclass(frozen=True)
class CouplingParams(Section):
    """How the tissue patches and the whole-patient model exchange cells, cytokines and rates."""

    mode: str = param("multiscale", unit="-", choices=("multiscale", "direct"),
                      doc="multiscale: patches are samples of the tumour, lifted by density and "
                          "restricted by per-capita rates; direct: the patches are the whole tumour "
                          "(every cell crossing counted once; needs B <= 2 K n_T0)")
    window_h: float = param(1.0, unit="h", gt=0, le=240,
                            doc="time constant of the moving averages of the patch rates (longer: smoother, "
                                "but the patient lags the patches while their rates change)")
    pseudo_count_cells: float = param(1.0, unit="cells", gt=0, le=100,
                                      doc="c0 of the CAR-T density ratio: its pseudo-count (cart_lift total) or the floor "
                                          "of its denominator (per_patch)")
    cart_lift: str = param(
        "per_patch", unit="-", choices=("total", "per_patch"),
        doc="how the re-lift holds the patches' CAR-T at the whole tumour's density: total (all patches "
            "together) or per_patch (each patch to its share, with a test cell per patch when the share "
            "is under one cell; the calibrated defaults, docs/multiscale.md section 2)")
    relift_alpha: float = param(
        0.003, unit="1", ge=0, lt=1,
        doc="re-lift the patches' tumour (CAR-T) cells to the whole tumour's tumour (CAR-T) density "
            "when their count lies outside the two-sided Poisson interval of this level around it "
            "(0.003: about 3 SD; 0 never re-lifts; multiscale only; docs/multiscale.md section 2)")


#: Moving averages kept on the state: name -> what one step contributes.
EMA_KEYS = ("kills", "tumour_time", "tumour_pos_time", "tumour_net", "cart_net", "cart_time", "egress",
            "exhausted", "cart", "egress_divisions", "bystander")
#: Their ``state.scalars`` keys.
_EMA = tuple(f"patch_ema_{k}" for k in EMA_KEYS)


def n_patches(config) -> int:
    """Number of tissue patches K (1 unless the lattice stacks several)."""
    return int(getattr(config.lattice, "patches", 1))


def bed_scale(config) -> float:
    """``S_v = B / (K n_T0)``: tumour-bed volume per patch volume."""
    return config.patient.burden_cells / (n_patches(config) * config.tumour.initial_cells)


def patch_counts(cells) -> tuple[int, int, int, int]:
    """Alive tumour cells, alive antigen-positive tumour cells, CAR-T cells and exhausted CAR-T cells."""
    return _patch_counts(cells.kind, cells.phenotype, cells.antigen, cells.n)


class PatchRates:
    """Moving averages of the patch counts and the rates derived from them (see module docstring).

    State lives in ``state.scalars`` under ``patch_ema_<key>`` and
    ``patch_prev_<tumour|cart>``; :meth:`update` is called once per step after
    the agent phase.
    """

    def __init__(self, config):
        c = config.coupling
        self.K = n_patches(config)
        self.dt_s = config.run.dt_s
        self.alpha = -math.expm1(-self.dt_s / (c.window_h * 3600.0))
        self.c0 = c.pseudo_count_cells
        self.per_patch = c.cart_lift == "per_patch"
        self.prior_cart_net = -config.product.basal_death_per_day / 86400.0

    def init_state(self, s: dict, cells) -> None:
        if "patch_prev_tumour" in s:
            for key in _EMA:        # a state saved before a moving average was added
                s.setdefault(key, 0.0)
            return
        tum, pos, cart, _ = patch_counts(cells)
        s["patch_prev_tumour"] = float(tum)
        s["patch_prev_tumour_pos"] = float(pos)
        s["patch_prev_cart"] = float(cart)
        for key in _EMA:
            s[key] = 0.0

    def update(self, s: dict, cells) -> tuple[int, int, int, int]:
        """Fold this step's patch counts into the moving averages; returns the counts (:func:`patch_counts`)."""
        tum, pos, cart, exh = patch_counts(cells)
        kills = float(s.get("cart_kills_step", 0))
        bystander = float(s.get("tumour_bystander_kills_step", 0))
        entered = float(s.get("cart_entered_step", 0))
        egressed = float(s.get("cart_egressed_step", 0))
        dt = self.dt_s
        prev_t = s["patch_prev_tumour"]
        # the CAR-T the agent phase acted on: those of the last step and this step's entrants
        # (who enter before it and may die, divide or leave in the same step)
        exposed = s["patch_prev_cart"] + entered
        step = (                                               # in the order of EMA_KEYS
            kills,                                             # kills
            prev_t * dt,                                       # tumour_time
            s["patch_prev_tumour_pos"] * dt,                   # tumour_pos_time
            tum - prev_t + kills + bystander,                  # tumour_net
            float(s.get("cart_expected_growth_step", 0.0)),    # cart_net
            exposed * dt,                                      # cart_time
            egressed,                                          # egress
            float(exh),                                        # exhausted
            float(cart),                                       # cart
            float(s.get("cart_egressed_divisions_left_step", 0)),     # egress_divisions
            bystander,                                         # bystander
        )
        a = self.alpha
        for key, x in zip(_EMA, step):
            s[key] += a * (x - s[key])
        s["patch_prev_tumour"] = float(tum)
        s["patch_prev_tumour_pos"] = float(pos)
        s["patch_prev_cart"] = float(cart)
        return tum, pos, cart, exh

    # -- rates (1/s) -------------------------------------------------------------
    @staticmethod
    def _ratio(s: dict, num: str, den: str, prior: float) -> float:
        """``s[num] / s[den]`` of two moving averages (keys ``patch_ema_<x>``), or ``prior``."""
        d = s[den]
        return s[num] / d if d > 0.0 else prior

    def kill_hazard(self, s: dict) -> float:
        return self._ratio(s, "patch_ema_kills", "patch_ema_tumour_pos_time", 0.0)

    def bystander_hazard(self, s: dict) -> float:
        return self._ratio(s, "patch_ema_bystander", "patch_ema_tumour_time", 0.0)

    def tumour_growth(self, s: dict) -> float:
        return self._ratio(s, "patch_ema_tumour_net", "patch_ema_tumour_time", 0.0)

    def cart_net_proliferation(self, s: dict) -> float:
        return self._ratio(s, "patch_ema_cart_net", "patch_ema_cart_time", self.prior_cart_net)

    def cart_egress(self, s: dict) -> float:
        return self._ratio(s, "patch_ema_egress", "patch_ema_cart_time", 0.0)

    def exhausted_share(self, s: dict) -> float:
        return self._ratio(s, "patch_ema_exhausted", "patch_ema_cart", 0.0)

    def egress_potential(self, s: dict, fallback: float) -> float:
        return self._ratio(s, "patch_ema_egress_divisions", "patch_ema_egress", fallback)

    def cart_per_patch(self, s: dict) -> float:
        """Moving average of the CAR-T cells in one patch (``Nbar``)."""
        return s["patch_ema_cart"] / self.K

    def density_ratio(self, s: dict, tumour_cart_cells: float, scale: float) -> float:
        """``rho``: the patient's tumour CAR-T density over the patches' (ratio estimator)."""
        share = tumour_cart_cells / (scale * self.K)
        if self.per_patch:
            return share / max(self.cart_per_patch(s), self.c0)
        return (share + self.c0) / (self.cart_per_patch(s) + self.c0)
