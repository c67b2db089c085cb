"""Risk over posterior draws (analysis.uncertainty): per-draw and pooled rates, the
sampling (Wilson), parameter (per-draw percentiles) and total (two-stage bootstrap)
intervals, on endpoint tables built by hand with known per-draw rates; and the batch
report of synthetic run files whose manifest records the draw.
"""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from analysis.risk import wilson_interval
from analysis.uncertainty import (pooled_bootstrap_interval, posterior_frame, posterior_risk,
                                  total_interval, draws_frame)
from helpers.runfiles import GOLDEN

OUTCOMES = ["CRS any grade", "CRS grade >= 3", "ICANS any grade", "ICANS grade >= 3",
            "ORR (best response CR or PR)", "CR (best response)"]


def table(rates, n, *, icans=True, product=None) -> pd.DataFrame:
    """``n`` runs per draw; in draw d the first ``round(rates[d] n)`` have CRS grade 3, the
    rest grade 1; ICANS grade 2 in every other run; responses CR, PR, SD, PD in turn."""
    rows = []
    for d, r in enumerate(rates):
        k = int(round(r * n))
        for m in range(n):
            rows.append({"draw": d, "crs_max_grade": 3.0 if m < k else 1.0,
                         "icans_max_grade": (2.0 if m % 2 else 0.0) if icans else np.nan,
                         "best_response": ("CR", "PR", "SD", "PD")[m % 4],
                         "product": product or ("a" if m < n // 2 else "b")})
    return pd.DataFrame(rows)


def test_per_draw_and_pooled_rates_by_hand():
    rates = [0.1, 0.25, 0.5, 0.75]
    pr = posterior_risk(table(rates, 20), n_boot=2000, seed=1)
    assert list(pr["outcome"].values) == OUTCOMES
    assert pr.sizes == {"group": 1, "outcome": 6, "draw": 4}
    crs3 = pr.sel(group="all", outcome="CRS grade >= 3")
    assert list(crs3["draw_p"].values) == rates and list(crs3["draw_n"].values) == [20] * 4
    k = sum(round(r * 20) for r in rates)
    assert int(crs3["k"]) == k and int(crs3["n"]) == 80 and float(crs3["p"]) == k / 80
    lo, hi = wilson_interval(k, 80)
    assert (float(crs3["lo"]), float(crs3["hi"])) == pytest.approx((lo, hi))
    # parameter interval: the 2.5-97.5 % percentiles of the four per-draw rates
    assert (float(crs3["param_lo"]), float(crs3["param_hi"])) == pytest.approx(
        tuple(np.quantile(rates, [0.025, 0.975])))
    assert float(crs3["draw_median"]) == pytest.approx(np.median(rates))
    # total: wider than the per-draw spread, inside [0, 1]; pooled bootstrap: around p
    assert 0.0 <= float(crs3["total_lo"]) <= float(crs3["param_lo"])
    assert float(crs3["param_hi"]) <= float(crs3["total_hi"]) <= 1.0
    assert float(crs3["pooled_boot_lo"]) < float(crs3["p"]) < float(crs3["pooled_boot_hi"])
    # every run has CRS; responses: ORR half of the runs, CR a quarter, in every draw
    anyc = pr.sel(group="all", outcome="CRS any grade")
    assert float(anyc["p"]) == 1.0 and float(anyc["total_lo"]) == float(anyc["total_hi"]) == 1.0
    orr = pr.sel(group="all", outcome="ORR (best response CR or PR)")
    cr = pr.sel(group="all", outcome="CR (best response)")
    assert list(orr["draw_p"].values) == [0.5] * 4 and list(cr["draw_p"].values) == [0.25] * 4
    assert float(orr["param_lo"]) == float(orr["param_hi"]) == 0.5
    assert pr.attrs["conf"] == 0.95 and "two-stage bootstrap" in pr.attrs["total_method"]


def test_intervals_are_seeded_and_the_total_tends_to_the_mixture():
    a = posterior_risk(table([0.2, 0.6], 10), seed=3)
    b = posterior_risk(table([0.2, 0.6], 10), seed=3)
    assert a.equals(b)
    # huge draws: each draw's own error vanishes and the total interval spans the draws
    k, n = np.array([10_000, 20_000, 30_000, 40_000]), np.full(4, 100_000)
    lo, hi = total_interval(k, n, n_boot=4000, rng=np.random.default_rng(0))
    assert lo == pytest.approx(0.1, abs=0.005) and hi == pytest.approx(0.4, abs=0.005)
    plo, phi = pooled_bootstrap_interval(k, n, n_boot=4000, rng=np.random.default_rng(0))
    assert 0.1 < plo < 0.25 < phi < 0.4          # the mean of four draws: much narrower
    # one draw: no parameter spread, the total is that draw's bootstrap
    lo, hi = total_interval([5], [20], n_boot=4000, rng=np.random.default_rng(0))
    w_lo, w_hi = wilson_interval(5, 20)
    assert lo == pytest.approx(w_lo, abs=0.08) and hi == pytest.approx(w_hi, abs=0.08)
    assert np.isnan(total_interval([], [])).all() and np.isnan(total_interval([0], [0])).all()


def test_missing_endpoints_groups_and_runs_without_a_draw():
    t = table([0.3, 0.7], 10, icans=False)
    t.loc[0, "best_response"] = ""                 # no tumour assessment: not counted
    t.loc[1, "draw"] = np.nan                      # a run outside the posterior design
    pr = posterior_risk(t, by="product")
    assert list(pr["group"].values) == ["a", "b"]
    icans = pr.sel(outcome="ICANS any grade")
    assert not icans["available"].values.any() and (icans["n"].values == 0).all()
    assert np.isnan(icans["total_lo"].values).all()
    orr = pr.sel(group="a", outcome="ORR (best response CR or PR)")
    assert int(orr["n"]) == 8 and list(orr["draw_n"].values) == [3, 5]
    frame = posterior_frame(pr)
    assert len(frame) == 12 and list(frame.columns[:3]) == ["group", "outcome", "endpoint"]
    per = draws_frame(pr)
    assert len(per) == 2 * 6 * 2 and list(per.columns) == ["group", "outcome", "draw", "n", "k",
                                                            "p"]
    with pytest.raises(KeyError, match="not a batch over posterior draws"):
        posterior_risk(t.drop(columns="draw"))


def draw_batch(folder, grades, draws):
    """Copies of the golden file with given CRS grades, a manifest with the draw column."""
    folder.mkdir(parents=True)
    lines = ["run_id,index,sweep_point,member,draw,replicate,status,file,"
             "kinetics.lymphoid_death_per_day"]
    for i, (g, d) in enumerate(zip(grades, draws)):
        run_id = f"pd_{i:05d}"
        p = folder / f"{run_id}.h5"
        shutil.copy(GOLDEN, p)
        with h5py.File(p, "r+") as h5:
            t = h5["timeseries/time"][...]
            h5["timeseries/crs_grade"][...] = np.where(t >= 1.0, float(g), 0.0)
            cfg = json.loads(h5.attrs["config_json"])
            cfg.setdefault("kinetics", {})["lymphoid_death_per_day"] = 0.1 * (d + 1)
            h5.attrs["config_json"] = json.dumps(cfg)
            h5.attrs["run_name"] = run_id
        lines.append(f"{run_id},{i},0,{i % 4},{d},0,done,{run_id}.h5,{0.1 * (d + 1)}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    (folder / "batch.toml").write_text(
        '[batch]\nname = "pd"\nroot_seed = 7\n\n[batch.population]\nsize = 4\n\n'
        '[batch.posterior]\nfile = "/x/calibration.nc"\nselect = "first"\ndraws = 3\n'
        'rows = [0, 1, 2]\n\n[batch.posterior.samples]\n'
        '"kinetics.lymphoid_death_per_day" = [0.1, 0.2, 0.3]\n')
    return folder


def test_batch_report_shows_the_three_intervals(tmp_path):
    from abm.cli import main
    # draw 0: grades 0 0 0 3 (CRS 1/4); draw 1: 1 1 3 3 (4/4, >= 3 2/4); draw 2: 0 1 0 1 (2/4)
    grades = [0, 0, 0, 3, 1, 1, 3, 3, 0, 1, 0, 1]
    folder = draw_batch(tmp_path / "pd", grades, [0] * 4 + [1] * 4 + [2] * 4)
    assert main(["analyze", str(folder), "-q"]) == 0
    out = folder / "report"
    md = (out / "report.md").read_text()
    assert "### With parameter uncertainty (3 posterior draws)" in md
    assert "4 virtual patients, 3 posterior draws (first of calibration.nc)" in md
    # CRS any: 7/12 pooled; per-draw 25, 100, 50 %: median 50 %, range 2.5-97.5 %
    lo, hi = wilson_interval(7, 12)
    plo, phi = np.quantile([0.25, 1.0, 0.5], [0.025, 0.975])
    row = (f"| CRS any grade | {100 * 7 / 12:.0f} % ({100 * lo:.0f}-{100 * hi:.0f}) 7/12 | "
           f"50 % ({100 * plo:.0f}-{100 * phi:.0f}) |")
    assert row in md
    pr = pd.read_csv(out / "posterior_risk.csv")
    crs3 = pr[pr.outcome == "CRS grade >= 3"].iloc[0]
    assert (crs3.k, crs3.n, crs3.n_draws) == (3, 12, 3)
    per = pd.read_csv(out / "posterior_draws.csv")
    got = per[per.outcome == "CRS grade >= 3"].sort_values("draw")["p"].tolist()
    assert got == [0.25, 0.5, 0.0]
    assert "](risk_over_draws.png)" in md
    assert (out / "risk_over_draws.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a batch without draws has no such section
    plain = tmp_path / "plain"
    shutil.copytree(folder, plain)
    shutil.rmtree(plain / "report")
    text = (plain / "manifest.csv").read_text().replace(",draw,", ",").splitlines()
    text = [text[0]] + [",".join(c for j, c in enumerate(r.split(",")) if j != 4)
                        for r in text[1:]]
    (plain / "manifest.csv").write_text("\n".join(text) + "\n")
    assert main(["analyze", str(plain), "-q"]) == 0
    md = (plain / "report" / "report.md").read_text()
    assert "parameter uncertainty" not in md and not (plain / "report" /
                                                       "posterior_risk.csv").exists()
