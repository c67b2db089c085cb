"""Where a run's output goes: refusing, before simulating, a place that cannot take it.

The run name is a single file name (``run.name`` is checked with the config),
so a run's file is always ``<out>/<name>/<name>_seed<seed>.h5``, under the
output folder. What is left to check is the file system as it is now.
"""

from __future__ import annotations

from pathlib import Path

from abm.errors import ConfigError


def check_output_dir(out, name: str | None = None, seed: int | None = None) -> None:
    """Refuse an output place that cannot take a run (one-line :class:`ConfigError`).

    Args:
        out: the output folder (``--out`` or ``output.dir``); it and
            ``out/<name>`` must be folders or not exist yet.
        name: the run (or batch) name, a folder under ``out``.
        seed: with a known seed, the run's file (or its ``.part``) must not be
            a folder.
    """
    base = Path(out)
    places = [(base, "the output folder")]
    if name is not None:
        places.append((base / name, "the run's folder"))
    for place, what in places:
        if place.exists() and not place.is_dir():
            raise ConfigError(f"{place} ({what}) exists and is not a folder; give another "
                              "output folder")
    if name is not None and seed is not None:
        final = base / name / f"{name}_seed{seed}.h5"
        if final.is_dir() or Path(f"{final}.part").is_dir():
            raise ConfigError(f"{final} (the run's output file) is a folder; remove it or "
                              "give another output folder")


__all__ = ["check_output_dir"]
