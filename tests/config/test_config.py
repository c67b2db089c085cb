"""Config validation: every malformed config gives ConfigError naming the key path."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from abm.config import load_config, config_from_dict, to_toml
from abm.schema import walk_params
from abm.config.root import Config
from abm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

# (name, TOML text, key path that the message must name)
MALFORMED = [
    ("unknown top-level section", "[runn]\nseed = 1", "runn"),
    ("unknown key", "[run]\nsed = 1", "run.sed"),
    ("unknown nested key", "[fields.il6]\nD = 3.0", "fields.il6.D"),
    ("unknown species", "[fields.il17]\nD_um2_s = 3.0", "fields.il17"),
    ("section not a table", "run = 3", "run"),
    ("seed wrong type", "[run]\nseed = \"abc\"", "run.seed"),
    ("seed negative", "[run]\nseed = -1", "run.seed"),
    ("seed float", "[run]\nseed = 1.5", "run.seed"),
    ("dt zero", "[run]\ndt_min = 0", "run.dt_min"),
    ("dt bool", "[run]\ndt_min = true", "run.dt_min"),
    ("end day negative", "[run]\nend_day = -2.0", "run.end_day"),
    ("start day positive", "[run]\nstart_day = 1.0", "run.start_day"),
    ("record not multiple of dt", "[run]\nrecord_every_min = 7.0", "run.record_every_min"),
    ("snapshot not multiple of dt", "[run]\nsnapshot_every_h = 0.15", "run.snapshot_every_h"),
    ("threads zero", "[run]\nthreads = 0", "run.threads"),
    ("shape 1D", "[lattice]\nshape = [64]", "lattice.shape"),
    ("shape 4D", "[lattice]\nshape = [8, 8, 8, 8]", "lattice.shape"),
    ("shape float", "[lattice]\nshape = [64.5, 64]", "lattice.shape[0]"),
    ("shape too small", "[lattice]\nshape = [2, 64]", "lattice.shape[0]"),
    ("shape not array", "[lattice]\nshape = 64", "lattice.shape"),
    ("site size negative", "[lattice]\nsite_um = -20.0", "lattice.site_um"),
    ("bad neighbourhood", "[lattice]\nneighbourhood = \"hex\"", "lattice.neighbourhood"),
    ("bad boundary", "[lattice]\nboundary = \"periodic\"", "lattice.boundary"),
    ("vessel fraction too big", "[lattice]\nvessel_fraction = 0.9", "lattice.vessel_fraction"),
    ("vessel fraction yields none", "[lattice]\nshape = [4, 4]\nvessel_fraction = 0.01\n"
                                    "[tumour]\ninitial_cells = 4", "lattice.vessel_fraction"),
    ("segment longer than lattice", "[lattice]\nshape = [16, 16]\nvessel_segment_sites = 40\n"
                                    "[tumour]\ninitial_cells = 10", "lattice.vessel_segment_sites"),
    ("bad preset name", "[product]\npreset = \"cd19\"", "product.preset"),
    ("unknown costimulation", "[product]\ncostimulation = \"CD3\"", "product.costimulation"),
    ("negative rate", "[product]\nkill_rate_per_h = -0.1", "product.kill_rate_per_h"),
    ("dose zero", "[product]\ndose_cells = 0", "product.dose_cells"),
    ("exhaustion float", "[product]\nexhaustion_engagements = 10.5", "product.exhaustion_engagements"),
    ("fraction above one", "[tumour]\nantigen_negative_fraction = 1.5",
     "tumour.antigen_negative_fraction"),
    ("all antigen negative", "[tumour]\nantigen_negative_fraction = 1.0",
     "tumour.antigen_negative_fraction"),
    ("tumour does not fit", "[lattice]\nshape = [32, 32]\n[tumour]\ninitial_cells = 5000",
     "tumour.initial_cells"),
    ("burden and volume together", "[patient]\ntumour_burden_cells = 1e10\ntumour_volume_ml = 10.0",
     "patient.tumour_volume_ml"),
    ("burden out of range", "[patient]\ntumour_burden_cells = 10.0", "patient.tumour_burden_cells"),
    ("patches hold more tumour than the patient", "[patient]\ntumour_burden_cells = 5000.0",
     "patient.tumour_burden_cells"),
    ("direct coupling of a large tumour", "[coupling]\nmode = \"direct\"",
     "coupling.mode"),
    ("diffusion negative", "[fields.il6]\nD_um2_s = -1.0", "fields.il6.D_um2_s"),
    ("half-life zero", "[fields.ifng]\ntissue_half_life_min = 0", "fields.ifng.tissue_half_life_min"),
    ("bad solver", "[fields]\nsolver = \"spectral\"", "fields.solver"),
    ("explicit on large 3D", "[lattice]\nshape = [300, 300, 300]\n[fields]\nsolver = \"explicit\"",
     "fields.solver"),
    ("compression too high", "[output]\ncompression = 12", "output.compression"),
    ("output flag wrong type", "[output]\nfields = \"yes\"", "output.fields"),
]


def write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_there_are_at_least_30_cases():
    assert len({name for name, _, _ in MALFORMED}) >= 30


@pytest.mark.parametrize("name,text,key", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_config_names_key(tmp_path, name, text, key):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert key in msg, msg
    assert str(p) in msg, msg
    assert "\n" not in msg


def test_cli_validate_exit_2_one_line_for_every_case(tmp_path):
    """`abm validate` prints one readable line, no traceback, exit 2, for each case."""
    paths = []
    for i, (_, text, key) in enumerate(MALFORMED):
        paths.append((write(tmp_path, text, f"bad{i}.toml"), key))
    # One interpreter, many invocations: keeps the test fast.
    code = textwrap.dedent("""
        import contextlib, io, sys
        from abm.cli import main
        for path in sys.argv[1:]:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc = main(["validate", path])
            print(rc, repr(err.getvalue()))
    """)
    res = subprocess.run([sys.executable, "-c", code] + [str(p) for p, _ in paths],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == len(paths)
    for (path, key), line in zip(paths, lines):
        rc, err = line.split(" ", 1)
        err = eval(err)
        assert rc == "2", (path, err)
        assert err.startswith("abm: error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err and key in err


def test_cli_real_subprocess_no_traceback(tmp_path):
    p = write(tmp_path, "[run]\ndt_min = -1")
    res = subprocess.run([sys.executable, "-m", "abm", "validate", str(p)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "run.dt_min must be > 0" in res.stderr


@pytest.mark.parametrize("text,needle", [
    ("[run\nseed=1", "is not valid TOML"),
])
def test_invalid_toml(tmp_path, text, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean 'seed'"):
        config_from_dict({"run": {"sed": 1}})


def test_presets_apply_and_can_be_overridden():
    cd28 = config_from_dict({"product": {"preset": "cd28"}}).product
    bb = config_from_dict({"product": {"preset": "4-1bb"}}).product
    assert cd28.costimulation == "CD28" and bb.costimulation == "4-1BB"
    assert cd28.engagement_ec50_molecules < bb.engagement_ec50_molecules
    assert cd28.dose_cells < bb.dose_cells
    over = config_from_dict({"product": {"preset": "4-1bb", "division_time_h": 15.0}}).product
    assert over.division_time_h == 15.0 and over.dose_cells == bb.dose_cells
    # the domain is a mechanism key: it can be swapped under a preset
    swapped = config_from_dict({"product": {"preset": "cd28", "costimulation": "4-1BB"}}).product
    assert swapped.costimulation == "4-1BB" and swapped.dose_cells == cd28.dose_cells


def test_config_is_frozen_and_resolved():
    cfg = load_config(ROOT / "configs" / "default.toml")
    with pytest.raises(Exception):
        cfg.run.seed = 3  # frozen
    assert cfg.patient.burden_cells == 9.5e10
    assert config_from_dict({"patient": {"tumour_volume_ml": 10.0}}).patient.burden_cells == 1e10


def test_resolved_toml_round_trips(tmp_path):
    cfg = load_config(ROOT / "configs" / "default.toml")
    p = write(tmp_path, to_toml(cfg))
    assert load_config(p) == cfg


def test_every_parameter_has_a_unit():
    for key, f, _ in walk_params(Config):
        assert f.metadata.get("unit"), f"{key} has no unit"


def test_all_shipped_configs_validate():
    from abm.batch import is_batch_file, load_batch
    from abm.config.files import read_toml
    from abm.studies.calibrate_config import load_calibration
    from abm.studies.sensitivity import load_sensitivity
    for p in sorted((ROOT / "configs").glob("*.toml")):
        tables = set(read_toml(p))
        if tables & {"sensitivity", "calibration"}:   # study files: abm sensitivity / abm calibrate
            load_sensitivity(p) if "sensitivity" in tables else load_calibration(p)
            continue
        load_batch(p) if is_batch_file(p) else load_config(p)   # batch_*.toml: abm batch
