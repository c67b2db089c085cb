"""Validation of the model's mechanisms at the default parameters, run by a command, never as unit tests.

``python -m validation [checks...]`` runs the checks named (all by default;
``--list`` names them). Each check is a module of this package:

* the eight mechanisms of docs/model.md section 10 (``check_*`` modules), which
  share three virtual cohorts simulated as ordinary batches
  (:mod:`validation.cohort`) and write ``results.json``, ``results.md`` and
  figures into one folder (:mod:`validation.mechanisms`);
* ``icans``, the whole-patient ICANS validation of docs/model.md 10.5 and 10.6
  (:mod:`validation.icans`), with its own runs in a JSON-lines file;
* ``multiscale``, the checks of the two-scale patient (:mod:`validation.multiscale`).

A mechanism check module defines ``NUMBER``, ``TITLE``, ``COHORTS`` (the
cohorts of :data:`validation.cohort.COHORTS` whose runs it reads) and
``run(ctx) -> dict`` (the record of :func:`validation.report.result`).
To add one, write the module and add a line to :data:`REGISTRY`.
"""

from __future__ import annotations

from pathlib import Path

#: Repository root: configs/ and the default output folders under runs/ are found from it.
ROOT = Path(__file__).resolve().parents[1]

#: check name -> module; the mechanism checks in the order of their numbers in docs/model.md section 10.
REGISTRY: dict[str, str] = {
    "il7_15": "validation.check_il7_15",
    "products": "validation.check_products",
    "burden": "validation.check_burden",
    "il6_source": "validation.check_il6_source",
    "tocilizumab": "validation.check_tocilizumab",
    "icans_crs": "validation.check_icans_crs",
    "seizure_grade": "validation.check_seizure_grade",
    "events": "validation.check_events",
    "icans": "validation.icans",
    "multiscale": "validation.multiscale",
}

#: The eight mechanism checks of docs/model.md section 10 (one cohort, one results.json).
MECHANISMS = ("il7_15", "products", "burden", "il6_source", "tocilizumab", "icans_crs", "seizure_grade",
              "events")

#: Names that stand for several checks.
GROUPS: dict[str, tuple[str, ...]] = {"mechanisms": MECHANISMS}

__all__ = ["ROOT", "REGISTRY", "MECHANISMS", "GROUPS"]
