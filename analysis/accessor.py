"""The ``ds.abm`` accessor: endpoints and risk on run Datasets (one run or a batch).

Importing :mod:`analysis` registers it. It works on what :func:`analysis.open_run`
returns (dim ``time``) and on what :func:`analysis.open_batch` returns (dims
``run, time``, lazy), and needs only the recorded variables it uses, so it is
testable on synthetic files:

>>> ds = open_batch("runs/example")                            # doctest: +SKIP
>>> ds.abm.max_grade("crs")          # lazy DataArray (run)
>>> ds.abm.onset("crs", 3)           # first day with CRS grade >= 3 (NaN: never)
>>> ds.abm.peak("blood_cart_per_ul") # Dataset: value, day
>>> ep = ds.abm.endpoints()          # every endpoint per run (computed once, cached)
>>> ds.abm.risk(by="product")        # P(CRS >= k), P(ICANS >= k) with Wilson intervals
>>> ds.abm.posterior_risk()          # over posterior draws: + parameter and total intervals
>>> ds.abm.check_endpoints()         # computed vs the simulator's /endpoints

Time-series variables relied on (each optional: an endpoint whose variable is
absent is NaN and listed in ``ep.attrs["not_available"]``): ``<kind>_grade``
for kind ``crs`` and ``icans``, ``blood_cart_per_ul``, ``plasma_<cytokine>``,
``n_tumour``, ``<drug>_doses`` and ``<drug>_total_mg``, ``temperature_c``,
``map_mmhg``, ``spo2_pct``, ``vasopressors``, ``oxygen_support``,
``hypotension_support``, ``fluids_total_ml``. Definitions: :mod:`analysis.endpoints`.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import xarray as xr

from analysis import endpoints as E
from analysis.risk import grade_outcomes, risk_table

#: Grades handled by default; a kind is available when ``<kind>_grade`` is recorded.
KINDS = ("crs", "icans")
#: Days at which the blood CAR-T level is an endpoint (Kimmel 2021 reports days 7, 14, 28).
CART_DAYS = (7, 14, 28)

_UNITS = {"max_grade": "1", "onset_day": "day", "duration_days": "day", "resolved_day": "day",
          "episodes": "1", "ongoing": "1", "grade3_onset_day": "day"}
_LONG = {"max_grade": "maximal {K} grade", "onset_day": "first day with {K} grade >= 1",
         "duration_days": "days inside {K} episodes (grade >= 1)",
         "resolved_day": "end of the last {K} episode (confirmed)",
         "episodes": "number of {K} episodes", "ongoing": "{K} grade >= 1 at the last record",
         "grade3_onset_day": "first day with {K} grade >= 3"}


@xr.register_dataset_accessor("abm")
class AbmAccessor:
    """Endpoints, risk and file access for run Datasets (``ds.abm``)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds
        self._cache: dict = {}

    # -- shape ------------------------------------------------------------------
    @property
    def is_batch(self) -> bool:
        """True for a batch Dataset (a ``run`` dimension)."""
        return "run" in self._ds.dims

    @property
    def n_runs(self) -> int:
        return int(self._ds.sizes.get("run", 1))

    def available(self, kind: str) -> bool:
        """Whether ``<kind>_grade`` (e.g. ``icans_grade``) is recorded."""
        return f"{kind}_grade" in self.series

    @property
    def record_interval_days(self) -> float:
        t = np.asarray(self._ds["time"].values, float)
        return float(np.median(np.diff(t))) if t.size > 1 else math.nan

    @property
    def skipped(self) -> list[dict]:
        """Runs of the batch folder that were not loaded (``run_id, status, reason``)."""
        return json.loads(self._ds.attrs.get("skipped", "[]") or "[]")

    # -- covariates ------------------------------------------------------------------
    def covariate_name(self, name: str) -> str:
        """The coordinate name of a covariate given by that name or by its config key.

        ``"patient.tumour_burden_cells"``, ``"patient_tumour_burden_cells"`` and
        ``"burden_cells"`` all give ``"burden_cells"`` (each coordinate keeps
        its config key in ``attrs["config_key"]``). Raises KeyError (naming
        the covariates there are) when nothing matches.
        """
        ds = self._ds
        if name in ds.coords or name in ds.data_vars:
            return name
        flat = name.replace(".", "_")
        for c, v in ds.coords.items():
            key = v.attrs.get("config_key")
            if key and (key == name or key.replace(".", "_") == flat):
                return str(c)
        if flat in ds.coords:
            return flat
        have = [str(c) for c, v in ds.coords.items() if "config_key" in v.attrs]
        raise KeyError(f"no covariate {name!r} (have: {', '.join(have) or 'none'})")

    def covariate(self, name: str) -> xr.DataArray:
        """A covariate along ``run`` by its name or config key (:meth:`covariate_name`)."""
        return self._ds[self.covariate_name(name)]

    # -- lazy one-liners -----------------------------------------------------------
    def grade(self, kind: str = "crs") -> xr.DataArray:
        if not self.available(kind):
            raise KeyError(f"{kind}_grade is not recorded in these runs ({kind.upper()} "
                           "not available)")
        return self._ds[f"{kind}_grade"]

    def max_grade(self, kind: str = "crs") -> xr.DataArray:
        """Maximal grade over time (lazy)."""
        return self.grade(kind).max("time").rename(f"{kind}_max_grade")

    def onset(self, kind: str = "crs", k: float = 1) -> xr.DataArray:
        """First day with grade >= ``k`` (NaN: never; lazy)."""
        g = self.grade(kind)
        return self._ds["time"].where(g >= k).min("time").rename(f"{kind}_onset_day")

    def peak(self, var: str) -> xr.Dataset:
        """Maximum of ``var`` over time and the day it is reached (``value``, ``day``)."""
        v = self._ds[var]
        filled = v.fillna(-np.inf)
        day = v["time"].isel(time=filled.argmax("time"))
        day = day.where(v.notnull().any("time"))
        return xr.Dataset({"value": v.max("time"), "day": day.drop_vars("time")})

    def value_at(self, var: str, day: float) -> xr.DataArray:
        """``var`` at the last record at or before ``day``."""
        return self._ds[var].sel(time=day, method="ffill")

    def duration(self, kind: str = "crs", merge_gap_h: float = E.MERGE_GAP_H) -> xr.DataArray:
        """Days inside ``kind`` episodes (see :mod:`analysis.endpoints`)."""
        return self.endpoints(kinds=(kind,), merge_gap_h=merge_gap_h)[f"{kind}_duration_days"]

    # -- endpoints -------------------------------------------------------------------
    @property
    def series(self) -> list[str]:
        """Names of the time-series variables (those over ``time``)."""
        return [k for k, v in self._ds.data_vars.items() if "time" in v.dims]

    def _needed(self, kinds) -> list[str]:
        have = set(self.series)
        need = [f"{k}_grade" for k in kinds] + [E.CART_VAR]
        need.append(E.TUMOUR_VAR if E.TUMOUR_VAR in have else E.PATCH_TUMOUR_VAR)
        need += [v for v in self.series if v.startswith(E.PEAK_PREFIX)]
        for d in E.drug_names(self.series):
            need += [f"{d}_doses", f"{d}_total_mg"]
        need += [v for _, v, _ in E.EXTREMES]
        return [v for v in dict.fromkeys(need) if v in have]

    def endpoints(self, *, kinds=KINDS, merge_gap_h: float = E.MERGE_GAP_H,
                  response_day: float = E.RESPONSE_DAY,
                  cart_peak_after_days: float = E.CART_PEAK_AFTER_DAYS, chunk_runs: int = 32,
                  progress: bool | None = None) -> xr.Dataset:
        """Per-run endpoints computed from the time series.

        Variables (NaN where the input is not recorded; those are listed in
        ``attrs["not_available"]``): for each kind in ``kinds``
        ``<kind>_max_grade, _onset_day, _duration_days, _resolved_day,
        _episodes, _ongoing, _grade3_onset_day``; ``blood_cart_peak_per_ul``,
        ``blood_cart_peak_day`` (the expansion peak: records from
        ``cart_peak_after_days`` after infusion on, skipping the infusion
        itself, as the simulator), ``blood_cart_day<d>_per_ul`` (d = 7, 14,
        28), ``blood_cart_day28_over_peak`` (contraction),
        ``blood_cart_peak_over_nadir`` (expansion over the post-infusion nadir,
        :func:`analysis.endpoints.fold_over_nadir`); ``plasma_<c>_peak_pg_ml`` and ``plasma_<c>_peak_day`` per
        cytokine; ``tumour_baseline, tumour_eval, response_day,
        tumour_change, response`` (CR/PR/SD/PD); ``<drug>_doses``,
        ``<drug>_total_mg``, ``<drug>_first_day``, ``drugs_used`` (text);
        ``icans_after_crs_days`` (ICANS onset minus CRS onset; NaN unless
        both occur); ``temperature_max_c, map_min_mmhg, spo2_min_pct, vasopressors_max,
        oxygen_support_max, hypotension_support_max, fluids_total_ml``;
        ``follow_up_day`` (last record).

        For a batch the runs are read ``chunk_runs`` at a time (each file is
        opened once per block: keep it at most ``analysis.batch.FILE_CACHE``),
        so memory stays bounded. The result is cached on this Dataset.
        """
        key = (tuple(kinds), merge_gap_h, response_day, cart_peak_after_days)
        if key in self._cache:
            return self._cache[key]
        ds = self._ds
        need = self._needed(kinds)
        t = np.asarray(ds["time"].values, float)
        drugs = E.drug_names(self.series)
        cytos = E.cytokine_names(self.series)
        rows: list[dict] = []
        if self.is_batch:
            starts = range(0, self.n_runs, max(1, int(chunk_runs)))
            it = starts
            if progress or (progress is None and self.n_runs >= 100):
                from tqdm.auto import tqdm
                it = tqdm(starts, desc="endpoints", unit="chunk", leave=False,
                          disable=None if progress is None else not progress)
            for a in it:
                # one thread: h5py serialises reads anyway, and threads only add overhead
                sub = ds[need].isel(run=slice(a, a + int(chunk_runs))).load(
                    scheduler="synchronous")
                arrays = {v: np.asarray(sub[v].values, float) for v in need}
                for i in range(sub.sizes["run"]):
                    rows.append(_run_endpoints(t, {v: arr[i] for v, arr in arrays.items()},
                                               kinds, drugs, cytos, merge_gap_h, response_day,
                                               cart_peak_after_days))
        else:
            sub = ds[need].load()
            rows.append(_run_endpoints(t, {v: np.asarray(sub[v].values, float) for v in need},
                                       kinds, drugs, cytos, merge_gap_h, response_day,
                                               cart_peak_after_days))
        out = _to_dataset(rows, ds, self.is_batch)
        missing = [k for k in kinds if not self.available(k)]
        missing += [v for v in (E.CART_VAR,) if v not in self.series]
        if E.TUMOUR_VAR not in self.series and E.PATCH_TUMOUR_VAR not in self.series:
            missing.append(E.TUMOUR_VAR)
        out.attrs.update({"not_available": ", ".join(missing), "merge_gap_h": merge_gap_h,
                          "response_day_target": response_day,
                          "record_interval_days": self.record_interval_days,
                          "kinds": ", ".join(kinds)})
        self._cache[key] = out
        return out

    def endpoints_frame(self, **kw) -> pd.DataFrame:
        """:meth:`endpoints` as a table: one row per run, coordinates as columns."""
        ep = self.endpoints(**kw)
        if not self.is_batch:
            return pd.DataFrame([{k: v.item() for k, v in ep.data_vars.items()}])
        df = ep.reset_coords().to_dataframe()
        return df

    def file_endpoints(self) -> dict[str, np.ndarray]:
        """The simulator's own ``/endpoints`` per run: {name: array (run,) or scalar}."""
        ds = self._ds
        if self.is_batch:
            return {k[len("endpoint_"):]: np.asarray(ds[k].values, float)
                    for k in ds.data_vars if k.startswith("endpoint_")}
        return {k[len("endpoint_"):]: np.asarray(v, float) for k, v in ds.attrs.items()
                if k.startswith("endpoint_") and np.ndim(v) == 0
                and isinstance(v, (int, float, np.number))}

    def check_endpoints(self, ep: xr.Dataset | None = None, *,
                        detail: bool = False) -> pd.DataFrame:
        """Compare endpoints computed from the time series with the file's ``/endpoints``.

        Tolerances (record resolution, see :mod:`analysis.endpoints`): grades,
        counts and doses exactly (episode counts but for the gaps that lie
        within one record interval of the merge gap, ``<kind>_episodes_uncertain``); days within one record interval; durations
        within two; peaks, minima and maxima of continuous values within 10 %
        (records are a subsample of the steps the simulator saw) or 1e-9.

        Returns one row per endpoint both sides have: ``endpoint, n, mismatches,
        max_abs_diff`` (inf where one side is NaN), ``tolerance, runs`` (the
        first mismatching runs), or with ``detail`` one row per (endpoint, run).
        """
        ep = self.endpoints() if ep is None else ep
        fe = self.file_endpoints()
        dt = self.record_interval_days
        rows, det = [], []
        runs = (np.asarray(self._ds["run"].values) if self.is_batch else np.array(["run"]))
        for name, fvals in fe.items():
            if name not in ep.data_vars or ep[name].dtype.kind not in "fiub":
                continue
            c = np.atleast_1d(np.asarray(ep[name].values, float))
            f = np.atleast_1d(fvals)
            tol_abs, tol_rel, label = _tolerance(name, dt)
            if name.endswith("_episodes") and f"{name}_uncertain" in ep.data_vars:
                # an episode gap within one record of the merge gap: the simulator may have merged it
                tol_abs = np.nan_to_num(np.atleast_1d(np.asarray(ep[f"{name}_uncertain"].values, float)))
                label = "exact but for gaps within one record of the merge gap"
            both_nan = np.isnan(c) & np.isnan(f)
            diff = np.where(np.isnan(c) != np.isnan(f), np.inf, np.abs(c - f))
            ok = both_nan | (diff <= tol_abs + tol_rel * np.abs(f) + 1e-9)
            bad = np.flatnonzero(~ok)
            rows.append({"endpoint": name, "n": int(c.size), "mismatches": int(bad.size),
                         "max_abs_diff": float(np.max(np.where(both_nan, 0.0, diff)))
                         if c.size else math.nan,
                         "tolerance": label,
                         "runs": ", ".join(str(runs[i]) for i in bad[:3])})
            if detail:
                det += [{"endpoint": name, "run": runs[i], "computed": c[i], "file": f[i],
                         "ok": bool(ok[i])} for i in range(c.size)]
        return pd.DataFrame(det if detail else rows)

    # -- risk -----------------------------------------------------------------------
    def risk(self, by: str | None = None, outcomes=None, **kw) -> pd.DataFrame:
        """:func:`analysis.risk.risk_table` of the computed endpoints (CRS and ICANS,
        any grade and >= 3 by default); ``by`` a coordinate such as ``product``."""
        kinds = tuple(dict.fromkeys(KINDS))
        ep = self.endpoints(kinds=kinds)
        outcomes = grade_outcomes(kinds) if outcomes is None else outcomes
        return risk_table(ep, outcomes, by=by, **kw)

    def posterior_risk(self, by: str | None = None, **kw) -> xr.Dataset:
        """Rates over posterior draws with sampling, parameter and total intervals
        (:func:`analysis.uncertainty.posterior_risk` of the computed endpoints); the
        batch needs posterior draws (a ``draw`` coordinate, ``[batch.posterior]``)."""
        from analysis.uncertainty import posterior_risk
        return posterior_risk(self.endpoints(), by=by, **kw)

    # -- one run, fields, cells ---------------------------------------------------------
    def patient(self, run) -> xr.Dataset:
        """One run of a batch (by id or position) as a single-run Dataset, padding removed."""
        ds = self._ds
        if not self.is_batch:
            return ds
        one = ds.isel(run=run) if isinstance(run, (int, np.integer)) else ds.sel(run=run)
        if int(ds.attrs.get("padded", 0)):   # drop the NaN padding of a shorter run
            key = next((v for v in ("step", "crs_grade", E.CART_VAR, *self.series)
                        if v in one.data_vars), None)
            if key is not None:
                one = one.isel(time=np.flatnonzero(np.isfinite(one[key].values)))
        one.attrs = dict(ds.attrs)
        one.attrs["path"] = str(one["path"].values)
        try:  # the run's own provenance (run name, seed, covariates) for titles
            from analysis.io import check_file
            prov = check_file(one.attrs["path"])
            one.attrs.update({k: v for k, v in prov.items()
                              if k not in ("config_toml", "config_json")})
        except Exception:  # pragma: no cover - the file went away since opening
            pass
        for k, v in self.file_endpoints().items():
            one.attrs[f"endpoint_{k}"] = float(np.asarray(v)[list(ds["run"].values).index(
                one["run"].item())])
        return one

    def path(self, run=None) -> str:
        if not self.is_batch:
            return str(self._ds.attrs["path"])
        if run is None:
            raise ValueError("a batch needs run= (id or position)")
        sel = self._ds["path"].isel(run=run) if isinstance(run, (int, np.integer)) \
            else self._ds["path"].sel(run=run)
        return str(sel.values)

    def fields(self, run=None, load: bool = False) -> xr.Dataset:
        """The ``/fields`` group of the run file (lazy)."""
        from analysis.io import open_group
        return open_group(self.path(run), "fields", load=load)

    def cells(self, run=None, load: bool = False) -> xr.Dataset:
        """The ``/cells`` group (ragged; :func:`analysis.io.cell_snapshot` cuts one snapshot)."""
        from analysis.io import open_group
        return open_group(self.path(run), "cells", load=load)

    def events(self, run=None) -> xr.Dataset:
        from analysis.io import open_group
        return open_group(self.path(run), "events", load=True)


def _tolerance(name: str, dt: float) -> tuple[float, float, str]:
    if name.endswith(("_max_grade", "_episodes", "_doses", "vasopressors_max",
                      "oxygen_rung_max")):
        return 0.0, 0.0, "exact"
    if name.endswith("_days"):
        return 2 * dt, 0.0, f"{2 * dt * 24:.3g} h"
    if name.endswith("_day"):
        return dt, 0.0, f"{dt * 24:.3g} h"
    return 0.0, 0.10, "10 %"


def _run_endpoints(t, v: dict, kinds, drugs, cytos, merge_gap_h, response_day,
                   cart_peak_after_days) -> dict:
    out: dict = {}
    for kind in kinds:
        g = v.get(f"{kind}_grade")
        s = E.grade_summary(t, g, merge_gap_h) if g is not None else \
            dict.fromkeys(E.GRADE_FIELDS, math.nan)
        for f in E.GRADE_FIELDS:
            out[f"{kind}_{f}"] = s[f]
    if "crs" in kinds and "icans" in kinds:   # MODEL 10.6: ICANS follows CRS
        out["icans_after_crs_days"] = out["icans_onset_day"] - out["crs_onset_day"]
    cart = v.get(E.CART_VAR)
    if cart is not None:
        late = np.where(t >= cart_peak_after_days - 1e-9, cart, np.nan)
        out["blood_cart_peak_per_ul"], out["blood_cart_peak_day"] = E.peak(t, late)
        for d in CART_DAYS:
            out[f"blood_cart_day{d}_per_ul"] = E.value_at(t, cart, d)
        out["blood_cart_day28_over_peak"] = E.over_peak(out["blood_cart_day28_per_ul"],
                                                        out["blood_cart_peak_per_ul"])
        out["blood_cart_peak_over_nadir"] = E.fold_over_nadir(t, cart,
                                                              out["blood_cart_peak_day"])[1]
    else:
        out["blood_cart_peak_per_ul"] = out["blood_cart_peak_day"] = math.nan
        out["blood_cart_day28_over_peak"] = out["blood_cart_peak_over_nadir"] = math.nan
        for d in CART_DAYS:
            out[f"blood_cart_day{d}_per_ul"] = math.nan
    for c in cytos:
        out[f"plasma_{c}_peak_pg_ml"], out[f"plasma_{c}_peak_day"] = E.peak(t, v[f"plasma_{c}"])
    whole = E.TUMOUR_VAR in v
    tum = v.get(E.TUMOUR_VAR, v.get(E.PATCH_TUMOUR_VAR))
    out.update(E.response(t, tum if tum is not None else np.full(t.shape, np.nan), response_day,
                          whole=whole))
    used = []
    for d in drugs:
        doses = v[f"{d}_doses"]
        n = float(np.nanmax(doses)) if np.isfinite(doses).any() else math.nan
        out[f"{d}_doses"] = n
        tot = v.get(f"{d}_total_mg")
        out[f"{d}_total_mg"] = float(np.nanmax(tot)) if tot is not None and \
            np.isfinite(tot).any() else math.nan
        times = E.dose_times(t, doses)
        out[f"{d}_first_day"] = float(times[0]) if times.size else math.nan
        if n > 0:
            used.append(d)
    out["drugs_used"] = ", ".join(used)
    for name, var, how in E.EXTREMES:
        x = v.get(var)
        if x is None or not np.isfinite(x).any():
            out[name] = math.nan
        else:
            out[name] = float(np.nanmax(x) if how == "max" else np.nanmin(x))
    ok = np.isfinite(t)
    for var in (f"{k}_grade" for k in kinds):
        if var in v:
            ok = ok & np.isfinite(v[var])
            break
    else:
        if cart is not None:
            ok = ok & np.isfinite(cart)
    out["follow_up_day"] = float(t[ok][-1]) if ok.any() else math.nan
    return out


def _to_dataset(rows: list[dict], ds: xr.Dataset, batch: bool) -> xr.Dataset:
    names = list(dict.fromkeys(k for r in rows for k in r))
    data = {}
    for n in names:
        vals = [r.get(n, math.nan) for r in rows]
        if all(isinstance(x, str) for x in vals):
            arr = np.array(vals, dtype=object)
        else:
            arr = np.array(vals, dtype=float)
        attrs = _attrs(n)
        data[n] = (("run",), arr, attrs) if batch else ((), arr[0], attrs)
    coords = {}
    if batch:
        coords = {k: c for k, c in ds.coords.items() if c.dims == ("run",)}
    out = xr.Dataset(data, coords=coords)
    return out


def _attrs(name: str) -> dict:
    for kind in KINDS:
        if name.startswith(kind + "_"):
            f = name[len(kind) + 1:]
            if f in _UNITS:
                return {"units": _UNITS[f], "long_name": _LONG[f].format(K=kind.upper())}
    if name.endswith(("_day", "_days")):
        return {"units": "day", "long_name": name.replace("_", " ")}
    if name.endswith("_per_ul"):
        return {"units": "cells/uL", "long_name": name.replace("_", " ")}
    if name.endswith("_pg_ml"):
        return {"units": "pg/mL", "long_name": name.replace("_", " ")}
    if name.endswith("_mg"):
        return {"units": "mg", "long_name": name.replace("_", " ")}
    units = {"temperature_max_c": "degC", "map_min_mmhg": "mmHg", "spo2_min_pct": "%",
             "fluids_total_ml": "mL", "tumour_change": "1", "tumour_baseline": "cells",
             "tumour_eval": "cells"}.get(name, "1")
    return {"units": units, "long_name": name.replace("_", " ")}


__all__ = ["AbmAccessor", "KINDS", "CART_DAYS"]
