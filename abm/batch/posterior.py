"""Posterior draws for ``[batch.posterior]``: read a calibration file, pick its rows.

A calibration file (``abm calibrate`` writes ``calibration.nc``; any netCDF-4
file of that layout will do) holds the variable ``samples(draw, parameter)``
(float64), one row per posterior draw, with the coordinate ``parameter``:
dotted config paths such as ``"kinetics.lymphoid_death_per_day"``.

Which rows a batch uses (``select``):

* ``"first"`` (default): rows ``0 .. draws - 1``, in file order;
* ``"random"``: a seeded choice without replacement: row ``i`` gets the key
  ``u_i = uniform(root_seed, BATCH_COVARIATES, step 3, i, 0)`` of the
  counter-based RNG (:mod:`abm.kernels.rng`) and the ``draws`` rows with the
  smallest keys are taken, smallest key first. So the choice is a pure
  function of the batch's root seed, and asking for more draws keeps the
  earlier ones (the first 10 of 20 are the 10 of 10).

Draw ``d`` of the batch is the ``d``-th row taken; the file row of each draw is
kept (``rows``) and written to the resolved ``batch.toml`` together with the
values, so a saved batch does not need the file again.

Nothing here knows the run config: :mod:`abm.batch.config` checks the
parameter paths and values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from abm.errors import ConfigError

#: The variable and coordinate names of a calibration file (fixed).
VARIABLE = "samples"
DRAW_DIM = "draw"
PARAMETER_DIM = "parameter"
#: How rows are chosen.
SELECT = ("first", "random")
#: ``step`` of the BATCH_COVARIATES stream keying the random choice of rows
#: (0-2 are the population and LHS draws of :mod:`abm.batch.sampling`).
STEP_POSTERIOR = 3


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _open(path: Path):
    import xarray as xr
    try:
        return xr.open_dataset(path, engine="h5netcdf")
    except Exception as first:  # noqa: BLE001 - not HDF5: let xarray pick another backend
        try:
            return xr.open_dataset(path)
        except Exception:  # noqa: BLE001
            raise first from None


def read_samples(path, *, key: str = "batch.posterior.file",
                 owner: str | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """``(parameters, values)`` of a calibration file: ``values[row, j]`` for parameter j.

    Raises:
        ConfigError: one line naming ``owner`` (the batch file) and ``key``:
            the file is missing or unreadable, has no ``samples(draw,
            parameter)`` variable or ``parameter`` coordinate, or no rows.
    """
    path = Path(path)

    def fail(message: str):
        raise ConfigError(f"{key} = {str(path)!r}: {message}", path=owner, key=key)

    if not path.exists():
        fail("no such file")
    if not path.is_file():
        fail("not a file")
    try:
        ds = _open(path)
    except Exception as exc:  # noqa: BLE001 - any reader error is one line
        fail(f"cannot be read as a netCDF file ({_one_line(exc)})")
    try:
        if VARIABLE not in ds.variables:
            have = ", ".join(sorted(str(v) for v in ds.data_vars)) or "none"
            fail(f"has no variable {VARIABLE!r} (expected {VARIABLE}({DRAW_DIM}, "
                 f"{PARAMETER_DIM}), as abm calibrate writes; variables: {have})")
        var = ds[VARIABLE]
        if set(var.dims) != {DRAW_DIM, PARAMETER_DIM}:
            fail(f"variable {VARIABLE!r} has dimensions ({', '.join(map(str, var.dims))}); "
                 f"expected ({DRAW_DIM}, {PARAMETER_DIM})")
        if PARAMETER_DIM not in var.coords:
            fail(f"variable {VARIABLE!r} has no coordinate {PARAMETER_DIM!r} (the dotted "
                 "config path of each column)")
        try:
            values = np.asarray(var.transpose(DRAW_DIM, PARAMETER_DIM).values, dtype=float)
        except (TypeError, ValueError) as exc:
            fail(f"variable {VARIABLE!r} is not numeric ({_one_line(exc)})")
        except Exception as exc:  # noqa: BLE001 - a damaged chunk
            fail(f"variable {VARIABLE!r} cannot be read ({_one_line(exc)})")
        names = []
        for x in np.asarray(var[PARAMETER_DIM].values).ravel():
            names.append(x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x))
    finally:
        ds.close()
    if values.shape[1] == 0:
        fail(f"variable {VARIABLE!r} has no parameters")
    if values.shape[0] == 0:
        fail(f"variable {VARIABLE!r} has no draws (an empty posterior sample)")
    return tuple(names), values


def select_rows(n_rows: int, draws: int, select: str, root_seed: int) -> tuple[int, ...]:
    """The file rows of the ``draws`` draws (see the module docstring)."""
    if not 1 <= draws <= n_rows:
        raise ValueError(f"draws must be in 1..{n_rows} (got {draws})")
    if select == "first":
        return tuple(range(draws))
    if select != "random":
        raise ValueError(f"select must be one of {SELECT} (got {select!r})")
    from abm.kernels import rng
    from abm.kernels.streams import BATCH_COVARIATES
    ids = np.arange(n_rows, dtype=np.int64)
    keys = np.asarray(rng.uniform_array(np.int64(root_seed), BATCH_COVARIATES, STEP_POSTERIOR,
                                        ids, 0))
    order = np.argsort(keys, kind="stable")
    return tuple(int(i) for i in order[:draws])


__all__ = ["read_samples", "select_rows", "VARIABLE", "DRAW_DIM", "PARAMETER_DIM", "SELECT",
           "STEP_POSTERIOR"]
