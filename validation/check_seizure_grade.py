"""Check 7 (docs/model.md 10.7): a single seizure with ICE 5 makes ICANS grade 3.

The grading function on the whole ICE x seizure table (ASTCT 2019) and every
recorded ICANS grade of every run recomputed from its recorded domains.
"""

from __future__ import annotations

import numpy as np

from validation.report import result

NUMBER = 7
TITLE = "A single seizure with ICE 5 makes ICANS grade 3"
COHORTS = ("mech_paired", "mech_burden", "mech_infusion")


def grading_table() -> list[tuple[str, int, int]]:
    """(case, expected, got) for the ICANS grading function (ASTCT 2019)."""
    from abm import grading as g
    rows = [("ICE 5, no seizure", 2, g.icans_grade(ice=5)),
            ("ICE 5, one brief seizure", 3, g.icans_grade(ice=5, seizure=g.SEIZURE_BRIEF)),
            ("ICE 10, one brief seizure", 3, g.icans_grade(ice=10, seizure=g.SEIZURE_BRIEF)),
            ("ICE 5, prolonged seizure", 4, g.icans_grade(ice=5, seizure=g.SEIZURE_PROLONGED)),
            ("seizure of 2 min is brief", g.SEIZURE_BRIEF, g.seizure_level(2.0)),
            ("seizure of 10 min is prolonged", g.SEIZURE_PROLONGED, g.seizure_level(10.0)),
            ("repetitive 2-min seizure counts as prolonged", g.SEIZURE_PROLONGED, g.seizure_level(2.0, True))]
    for ice in range(11):
        base = 0 if ice == 10 else 1 if ice >= 7 else 2 if ice >= 3 else 3
        rows.append((f"ICE {ice}", base, g.icans_grade(ice=ice)))
        rows.append((f"ICE {ice} + brief seizure", max(base, 3), g.icans_grade(ice=ice, seizure=g.SEIZURE_BRIEF)))
    return rows


def check_seizure_grade(runs=None) -> dict:
    """docs/model.md 10.7: the grading function (exact table) and, over simulated runs, every recorded ICANS grade
    recomputed from its recorded domains, and the grade at recorded brief seizures with ICE 3-6."""
    from abm import grading as g
    table = grading_table()
    bad = [(c, e, x) for c, e, x in table if e != x]
    key = g.icans_grade(ice=5, seizure=g.SEIZURE_BRIEF)
    lines = [f"icans_grade(ice=5, seizure=brief) = {key} (expected 3); grading table: "
             f"{len(table) - len(bad)}/{len(table)} cases as ASTCT 2019"]
    lines += [f"  MISMATCH {c}: expected {e}, got {x}" for c, e, x in bad]
    figs = {"ice5_brief_seizure_grade": key, "table_cases": len(table), "table_mismatches": len(bad)}
    passed = not bad and key == 3
    if runs:
        n_rec = n_mis = 0
        seizure_events = 0
        brief_ice36, brief_ice36_grade3 = 0, 0
        ice5_brief = 0
        for r in runs:
            ts = r["ts"]
            need = ("ice_score", "consciousness_level", "seizure_level", "motor_weakness", "oedema_level",
                    "icans_grade")
            if any(np.all(np.isnan(ts[k])) for k in need):
                continue
            ice, cons, sz, mw, oe, gr = (ts[k] for k in need)
            ok = ~np.isnan(gr)
            for j in np.flatnonzero(ok):
                want = g.icans_grade(int(ice[j]), int(cons[j]), int(sz[j]), mw[j] > 0, int(oe[j]))
                n_rec += 1
                n_mis += int(want != gr[j])
            sel = ok & (sz == g.SEIZURE_BRIEF) & (ice >= 3) & (ice <= 6)
            brief_ice36 += int(sel.sum())
            brief_ice36_grade3 += int(np.sum(sel & (gr >= 3)))
            ice5_brief += int(np.sum(sel & (ice == 5)))
            seizure_events += sum(1 for e in r["events"] if e[1] == "seizure")
        lines.append(f"simulated runs ({len(runs)}): {n_rec} hourly records, recorded ICANS grade = "
                     f"grading(ICE, consciousness, seizure, motor, oedema) in {n_rec - n_mis}/{n_rec}")
        lines.append(f"seizure events in the logs: {seizure_events}; records with a brief seizure counting and "
                     f"ICE 3-6: {brief_ice36} (ICE exactly 5: {ice5_brief}), graded >= 3 in {brief_ice36_grade3}")
        figs.update(records=n_rec, record_mismatches=n_mis, seizure_events=seizure_events,
                    brief_seizure_ice3_6_records=brief_ice36, brief_seizure_ice5_records=ice5_brief,
                    brief_seizure_ice3_6_grade3=brief_ice36_grade3)
        passed = passed and n_mis == 0 and brief_ice36_grade3 == brief_ice36
    return result(7, TITLE, "icans_grade(ICE 5, one brief seizure) == 3 and the whole ICE x seizure table as ASTCT 2019; "
                     "every recorded ICANS grade equals the grading function of its recorded domains",
                  passed, figs, lines)


def run(ctx) -> dict:
    return check_seizure_grade(ctx.runs(*COHORTS))
