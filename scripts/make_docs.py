"""Write docs/parameter_table.md: every config parameter with its default, unit, range, meaning and source.

    python scripts/make_docs.py            # rewrite docs/parameter_table.md
    python scripts/make_docs.py --check    # exit 1 when the file is out of date

The table is generated from the parameter schema (the ``param()`` declarations
that ``abm show-config`` prints), resolved at ``configs/default.toml`` (the CD28
product preset and the default clinician); a second table lists the 4-1BB
preset's differences. The source column comes from :data:`SOURCES` when a
parameter has a literature source, otherwise from a citation in the
parameter's own doc, otherwise it names the page that explains the value.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from abm.config import Config, load_config  # noqa: E402
from abm.schema import describe, walk_params  # noqa: E402

OUT = ROOT / "docs" / "parameter_table.md"
DEFAULT_CONFIG = ROOT / "configs" / "default.toml"

#: Literature sources of individual parameters. Tags: [V] read in a source,
#: [R] recalled (check before relying on it), [D] derived, [A] assumed,
#: [C] calibrated to the virtual trials (docs/calibration.md).
SOURCES = {
    "run.dt_min": "agent step ~6 min [A]",
    "lattice.site_um": "one cell diameter ~20 um [R]",
    "lattice.vessel_fraction": "2-5 % of sites [A]",
    "patient.tumour_burden_cells": "ZUMA-1 median metabolic tumour volume 94.86 mL (Kimmel 2021) x 1e9 cells/mL [V/D]",
    "patient.weight_kg": "adult [A]",
    "product.dose_cells": "CD28: 2e6/kg x 70 kg (ZUMA-1 label) [V]; 4-1BB: JULIET median ~3e8 [V]",
    "product.division_time_h": "at g = 1: CD28 ~10 h (Singh 2021 K_exp,max 1.73/day) [V]; 4-1BB's ~19 h "
                               "(Stein 2019) [V] follows from its glycolytic gain",
    "product.costimulation": "domain gains in abm/presets/costimulation.toml; Kawalekar 2016 [R]; [C] "
                             "docs/model.md 3",
    "product.division_basal_fraction": "[C] 4-1BB ~19 h vs CD28 ~10 h (docs/model.md 3)",
    "product.secretion_basal_fraction": "[C] 4-1BB 2-5x less IFN-g / GM-CSF [R] (docs/model.md 3)",
    "product.il6_secretion_basal_fraction": "[C] docs/model.md 3",
    "product.activation_death_basal_fraction": "[C] docs/model.md 3",
    "product.exhaustion_oxidative_gain": "[C] ~2x the CD28 limit for 4-1BB [A] (docs/model.md 3)",
    "product.memory_oxidative_protection": "[C] 4-1BB 0.003/day, CD28 0.01/day (docs/model.md 3)",
    "product.exhausted_oxidative_protection": "[C] docs/model.md 3",
    "product.glycolytic_time_h": "[A] glycolytic switch within hours of stimulation",
    "product.oxidative_time_h": "[A] mitochondrial capacity builds over ~1 day",
    "product.oxidative_tonic_fraction": "[A] docs/model.md 3",
    "product.glycolytic_activation_k": "[A] docs/model.md 3",
    "product.engagement_ec50_molecules": "lower threshold for CD28 (Majzner 2020) [V]; 4-1BB [C]",
    "product.exhaustion_engagements": "at o = 0; 8-12 without rest (CARCADE) [V]; ~2x for 4-1BB [A]",
    "product.kill_rate_per_h": "serial killing 2-16 kills/day in tissue [R]",
    "product.speed_um_per_min": "2-10 um/min in tissue [R]",
    "product.memory_death_per_day": "at o = 0; 4-1BB: terminal half-life ~220 d (Stein 2019 beta "
                                    "0.0032/day) [V]",
    "product.rest_recovery_per_day": "[C] docs/calibration.md",
    "product.activation_death_per_day": "[C] docs/calibration.md",
    "product.memory_conversion_per_day": "[C] docs/calibration.md",
    "product.homing_per_day": "[C] docs/calibration.md",
    "product.egress_per_day": "[C] docs/calibration.md",
    "myeloid.ifng_ec50_pg_ml": "IFN-gamma EC50 100-1000 pg/mL [R] x ~10 slab factor [C]",
    "myeloid.gmcsf_ec50_pg_ml": "GM-CSF EC50 10-100 pg/mL [R] x ~10 slab factor [C]",
    "blood.plasma_volume_ml": "~3 L adult plasma [R]",
    "blood.blood_volume_ml": "~5 L adult blood [R]",
    "blood.ifng_half_life_min": "Kurzrock 1985 (25-35 min i.v.) [V]",
    "blood.gmcsf_half_life_min": "t1/2 alpha 20, beta 68 min [V]",
    "blood.il6_half_life_min": "Hosseini 2020 thalfIL6 [V]",
    "blood.il1_half_life_min": "5-20 min [R]",
    "blood.myeloid_pool_cells": "1e10 order of magnitude [D]; 3e9 [C]",
    "lymphodepletion.depth": "Flu/Cy removes ~80 % of host lymphocytes [A]",
    "clinician.tocilizumab_mg_per_kg": "8 mg/kg (label) [V]",
    "brain.lp_cm_s_mmhg": "PMC2892751 Table 2 [V]",
    "brain.capillary_pressure_mmhg": "human 25-35 mmHg [R]",
    "brain.capillary_area_cm2": "100-150 cm^2/g x 1.3 kg brain [R]",
    "brain.icp_rest_mmhg": "5-15 mmHg [R]",
    "brain.pressure_volume_index_ml": "Marmarou, adults ~25 mL [R]",
}

#: The page that explains the parameters of each section when no source is given.
SECTION_PAGES = {
    "run": "docs/model.md 1", "lattice": "docs/model.md 1", "patient": "docs/model.md 2",
    "product": "docs/model.md 3", "tumour": "docs/model.md 3", "myeloid": "docs/model.md 3",
    "endothelium": "docs/model.md 3", "fields": "docs/model.md 4", "blood": "docs/patient.md 3",
    "lymphodepletion": "docs/patient.md 3", "physiology": "docs/patient.md 5",
    "drugs": "docs/patient.md 4", "clinician": "docs/patient.md 6", "brain": "docs/brain.md",
    "events": "docs/brain.md 7", "output": "docs/model.md 9",
}

#: A citation inside a parameter's doc: an author and year, a PMC id, a label or trial name.
CITATION = re.compile(r"[A-Z][A-Za-z-]+(?: et al\.?)? (?:19|20)\d\d|PMC\d+|ZUMA-1|JULIET|ASTCT|Cairo-Bishop")


def _value(cfg, key: str):
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if v is None:
        return "(none)"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def source_of(key: str, doc: str) -> str:
    if key in SOURCES:
        return SOURCES[key]
    if CITATION.search(doc or ""):
        return "see description"
    return SECTION_PAGES.get(key.split(".")[0], "docs/model.md")


def render() -> str:
    cfg = load_config(DEFAULT_CONFIG)
    cfg_41bb = load_config(DEFAULT_CONFIG, {"product": {"preset": "4-1bb"}})
    lines = [
        "# Parameter table",
        "",
        "<!-- Generated by scripts/make_docs.py from the parameter schema; do not edit by hand. -->",
        "",
        "Every parameter of a run config, at the values of `configs/default.toml`",
        "(the CD28 product preset, the default clinician). `abm show-config CONFIG`",
        "prints the same keys for any config. Units: `1` dimensionless, `-` labels,",
        "flags and counts. Source tags: [V] read in a source, [R] recalled (check",
        "before relying on it), [D] derived, [A] assumed, [C] calibrated to the",
        "virtual trials (docs/calibration.md); a page name points at the",
        "derivation. The model itself is described in docs/model.md.",
        "",
    ]
    section = None
    for key, f, _ in walk_params(Config):
        top = key.rsplit(".", 1)[0] if "." in key else ""
        if top != section:
            section = top
            lines += ["", f"## `[{section}]`", "",
                      "| key | default | unit | allowed | description | source |",
                      "|---|---|---|---|---|---|"]
        m = f.metadata
        lines.append("| `{}` | {} | {} | {} | {} | {} |".format(
            key.split(".")[-1] if "." in key else key, _cell(_fmt(_value(cfg, key))),
            _cell(m.get("unit", "")), _cell(describe(f)), _cell(m.get("doc", "")),
            _cell(source_of(key, m.get("doc", "")))))
    lines += ["", "## The 4-1BB product preset", "",
              "`[product] preset = \"4-1bb\"` (tisagenlecleucel-like) differs from the CD28",
              "default in these keys:", "",
              "| key | CD28 | 4-1BB |", "|---|---|---|"]
    for key, _, _ in walk_params(Config):
        if key.startswith("product.") and _value(cfg, key) != _value(cfg_41bb, key):
            lines.append(f"| `{key}` | {_cell(_fmt(_value(cfg, key)))} | "
                         f"{_cell(_fmt(_value(cfg_41bb, key)))} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the file is out of date")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python scripts/make_docs.py")
            return 1
        print(f"{OUT.relative_to(ROOT)} is up to date")
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
