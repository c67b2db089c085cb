"""A small patient shared by the model tests: one 32^2 patch, 300 tumour cells, days -1 to 6."""

from __future__ import annotations

from abm.config import config_from_dict

SMALL = {"lattice": {"shape": [32, 32]}, "tumour": {"initial_cells": 300},
         "patient": {"random_effects": False, "tumour_burden_cells": 3e10},
         "run": {"seed": 5, "start_day": -1.0, "end_day": 6.0},
         "output": {"fields": False, "cells": False}}


def small(extra=None):
    """The small patient's config, with the sections of ``extra`` updated key by key."""
    data = {k: dict(v) for k, v in SMALL.items()}
    for k, v in (extra or {}).items():
        data.setdefault(k, {}).update(v)
    return config_from_dict(data)
