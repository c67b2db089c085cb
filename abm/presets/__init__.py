"""Named presets shipped with the package: the TOML files in this folder (product, clinician)."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def load_presets(kind: str) -> dict[str, dict]:
    """Return the preset tables of ``abm/presets/<kind>.toml`` (name -> table)."""
    text = resources.files("abm").joinpath("presets", f"{kind}.toml").read_text()
    return tomllib.loads(text)
