"""Figures: numbers at risk under the onset curves, the ICE score on its own panel."""

from __future__ import annotations

import numpy as np
import xarray as xr

from analysis import plots
from analysis.risk import cumulative_incidence, numbers_at_risk
from helpers.runfiles import grade_series

# a synthetic cohort of 8 runs: onset day (NaN: none) and end of follow-up
ONSET = np.array([1.0, 2.0, 2.0, 5.0, np.nan, np.nan, np.nan, 3.0])
FOLLOW = np.array([10.0, 10.0, 10.0, 10.0, 10.0, 4.0, 7.0, 10.0])


def test_numbers_at_risk_by_hand():
    # day 0: all 8; day 2: not the day-1 onset -> 7; day 3: onsets at 1, 2, 2 gone -> 5;
    # day 5: also onset 3 and the run censored at 4 gone -> 3; day 7: onset 5 gone -> 2
    # (the run censored at 7 still counts on its last day); day 10: 1
    days = [0, 2, 3, 5, 7, 8, 10]
    assert numbers_at_risk(ONSET, FOLLOW, days).tolist() == [8, 7, 5, 3, 2, 1, 1]
    # the Kaplan-Meier table agrees at its own times
    ci = cumulative_incidence(ONSET, FOLLOW, origin=0.0)
    for t, n in zip(ci["time"], ci["at_risk"]):
        if t > 0:
            assert numbers_at_risk(ONSET, FOLLOW, [t])[0] == n


def _texts(ax):
    return [(round(float(t.get_position()[0]), 6), t.get_text()) for t in ax.texts]


def test_onset_figure_shows_the_numbers_at_risk_per_group():
    group = np.array(["a"] * 8 + ["b"] * 8, dtype=object)
    onset = np.r_[ONSET, np.full(8, np.nan)]
    follow = np.r_[FOLLOW, np.full(8, 10.0)]
    ep = xr.Dataset({"crs_onset_day": ("run", onset),
                     "crs_grade3_onset_day": ("run", np.full(16, np.nan)),
                     "crs_max_grade": ("run", np.where(np.isfinite(onset), 1.0, 0.0)),
                     "follow_up_day": ("run", follow)},
                    coords={"arm": ("run", group)})
    fig = plots.plot_onset(ep, by="arm", kinds=("crs",))
    curve = fig.axes[0]
    strip = next(a for a in fig.axes if any(t.get_text() == "number at risk" for t in a.texts))
    days = [float(d) for d in curve.get_xticks() if 0 <= d <= 10]
    assert days == [float(d) for d in plots.at_risk_days(0.0, 10.0)] and len(days) >= 3
    texts = strip.texts
    labels = [t.get_text() for t in texts]
    assert "a" in labels and "b" in labels
    # counts drawn for group a at each tick day match the hand numbers; group b never leaves
    rows = {}
    for t in texts:
        x, y = t.get_position()
        if t.get_text().isdigit():
            rows.setdefault(round(y), {})[round(float(x), 6)] = int(t.get_text())
    assert [rows[0][round(d, 6)] for d in days] == numbers_at_risk(ONSET, FOLLOW, days).tolist()
    assert [rows[1][round(d, 6)] for d in days] == [8] * len(days)
    plots.plt.close(fig)


def test_ice_score_has_its_own_panel():
    t = np.arange(0, 8 * 24 + 1) / 24.0
    ice = np.where((t > 3) & (t < 5), 6.0, 10.0)
    ds = xr.Dataset({"crs_grade": ("time", grade_series(t, [(1, 4, 2)])),
                     "icans_grade": ("time", grade_series(t, [(3, 5, 1)])),
                     "ice_score": ("time", ice)}, coords={"time": t})
    fig = plots.plot_patient(ds, title="test")
    by_label = {a.get_ylabel(): a for a in fig.axes}
    assert "ICE score" in by_label and "grade" in by_label
    ice_ax, grade_ax = by_label["ICE score"], by_label["grade"]
    assert ice_ax is not grade_ax
    lo, hi = ice_ax.get_ylim()
    assert lo <= 0 and 10 <= hi <= 11
    # the grade axis (0-4) carries grades only; no twin axis shares its place
    assert all("ICE" not in ln.get_label() for ln in grade_ax.lines)
    assert sum(a.get_position().bounds == grade_ax.get_position().bounds
               for a in fig.axes) == 1
    assert np.allclose(ice_ax.lines[0].get_ydata(), ice)
    plots.plt.close(fig)
    # without an ICE series there is no ICE panel
    fig = plots.plot_patient(ds.drop_vars("ice_score"), title="test")
    assert "ICE score" not in {a.get_ylabel() for a in fig.axes}
    plots.plt.close(fig)
