"""Named bundles of the arrays the agent-pass kernels take.

Each bundle is a ``collections.namedtuple`` (Numba passes them into compiled
code as tuples, by reference: no copy). The caller builds a bundle once and
rebuilds it only when one of its arrays is reallocated, so a step passes a
handful of arguments instead of dozens. Field names are the names the kernels
use for the arrays.

Kernels take the arrays out of a bundle one assignment per array
(``ids = cells.ids``), not by tuple unpacking (``ids, kind = cells.ids,
cells.kind``): in rule bodies inlined with ``inline="always"`` the unpacking
form gave wrong results (Numba 0.68).
"""

from __future__ import annotations

from collections import namedtuple

#: The cell-table columns (:data:`abm.cells.COLUMNS`), one row per cell.
CellColumns = namedtuple("CellColumns", [
    "ids", "kind", "site", "phenotype", "activation", "antigen", "engagements",
    "divisions_left", "target", "timer", "store", "glycolytic", "oxidative"])

#: Per-site lattice arrays: occupancy (row or FREE / RESERVED), neighbour table,
#: vessel mask, site key and tile starts of
#: :func:`abm.kernels.cells_common.tile_layout`, and the site offsets of the
#: lattice rows around a site (prefetched occupancy lines).
SiteArrays = namedtuple("SiteArrays", [
    "occ", "neighbours", "vessel", "site_key", "tile_start", "occ_rows"])

#: Field arrays: ``fields`` ``(F, n_sites)`` pg/mL (read only); ``sources``
#: (pg/mL/s) and ``uptake`` (1/s) ``(F, n_sites)`` are added to; ``perm``
#: (vessel permeability, 1) is set at vessel sites.
FieldArrays = namedtuple("FieldArrays", ["fields", "sources", "uptake", "perm"])

#: Rule parameters: tumour, CAR-T, myeloid and endothelial parameter vectors,
#: the environment vector (steroid effect, IL-6R occupancy), the number of
#: movement passes and the hop probability per pass of CAR-T and myeloid cells.
RuleParams = namedtuple("RuleParams", [
    "tp", "cp", "mp", "ep", "env", "n_move", "p_cart", "p_mye"])

#: The static grouping of tumour rows kept between steps
#: (:func:`abm.kernels.cells_common.static_classes`); ``info`` holds
#: ``[rows grouped, entries of smotile]``.
TumourGroups = namedtuple("TumourGroups", ["sstart", "srows", "smotile", "info"])

#: Per-step scratch: class starts and rows, key buffer (also the visiting
#: order of a tile's motile rows), motile rows, hop masks, colour orders and
#: the birth reservations. Nothing carries over between steps except that
#: ``birth_site`` is -1 in every row between steps.
Scratch = namedtuple("Scratch", [
    "start", "rows", "kbuf", "motile", "hopmask", "class_order", "tile_order",
    "birth_site", "birth_value"])

#: Per-row outputs of the pass (event flags, IL-6 / VWF / ANG-2 pg, a CAR-T
#: cell's expected births minus deaths), per-tile tumour counters and the
#: step's totals ``counts`` (int64) and ``sums`` (float64), overwritten every step.
Tallies = namedtuple("Tallies", [
    "events", "il6_out", "vwf_out", "ang2_out", "growth_out", "tcount", "counts", "sums"])

__all__ = ["CellColumns", "SiteArrays", "FieldArrays", "RuleParams", "TumourGroups", "Scratch",
           "Tallies"]
