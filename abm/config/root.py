"""The root configuration: every section of a run, resolved and frozen."""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

from abm.schema import Section, param, section
from abm.lattice import LatticeParams
from abm.model.blood import BloodParams, LymphodepletionParams
from abm.model.brain import BrainParams
from abm.model.cart import ProductParams
from abm.model.clinician import ClinicianParams
from abm.model.coupling import CouplingParams, bed_scale, n_patches
from abm.model.drugs import DrugParams
from abm.model.endothelium import EndothelialParams
from abm.model.events import EventParams
from abm.model.fields import FieldParams
from abm.model.kinetics import KineticsParams
from abm.model.myeloid import MyeloidParams
from abm.model.physiology import PhysiologyParams
from abm.model.response import ResponseParams
from abm.model.tumour import TumourParams

#: Tumour cells per mL of tumour tissue, used to convert a volume to a burden.
CELLS_PER_ML = 1e9
#: Longest run name in bytes (UTF-8): it is a folder and file name, and most
#: file systems allow 255 bytes for a name, including the ``_seed<N>.h5.part`` tail.
MAX_NAME_BYTES = 200
#: Most agent steps of one run (a year at 6 min is 87 600); bounds what
#: validation and a run's setup compute from the time axis.
MAX_STEPS = 10_000_000
#: Most lattice sites (the product of lattice.shape), e.g. 400 x 400 x 400;
#: bounds the memory a config can ask for.
MAX_SITES = 64_000_000


@dataclass(frozen=True)
class RunParams(Section):
    """Time axis, seed, recording and threads of one run."""

    name: str = param("default", unit="-",
                      doc="run name: the output folder under the output dir and the start of the "
                          "file name: no '/', '\\' or control characters, not starting "
                          f"with '.', at most {MAX_NAME_BYTES} bytes")
    seed: int | None = param(None, unit="-", ge=0, lt=2**63,
                             doc="run seed; drawn and recorded when absent")
    replicate: int = param(0, unit="-", ge=0, le=1_000_000_000,
                           doc="replicate index within a batch")
    start_day: float = param(-5.0, unit="day", ge=-30, le=0,
                             doc="first simulated day relative to infusion (day 0)")
    end_day: float = param(28.0, unit="day", gt=0, le=365, doc="last simulated day")
    dt_min: float = param(6.0, unit="min", gt=0, le=60, doc="agent step")
    record_every_min: float = param(60.0, unit="min", gt=0, doc="time-series record interval")
    snapshot_every_h: float = param(24.0, unit="h", gt=0, doc="field and cell snapshot interval")
    checkpoint_every_h: float = param(24.0, unit="h", gt=0, doc="checkpoint interval")
    threads: int = param(1, unit="-", ge=1, le=256,
                         doc="Numba threads (results do not depend on it); 1 by default "
                             "because a patch of ~1e5 voxels gains little from threads and "
                             "batches get their parallelism from processes")

    def check(self, fail):
        problem = name_problem(self.name)
        if problem:
            shown = repr(self.name) if len(self.name) <= 60 else repr(self.name[:40]) + "..."
            fail("name", f"must be a file name: {problem} (got {shown})")
        steps = (self.end_day - self.start_day) * 1440.0 / self.dt_min
        if steps > MAX_STEPS:
            fail("dt_min", f"gives {steps:.3g} steps from run.start_day to run.end_day, more "
                           f"than {MAX_STEPS}; use a longer step or a shorter run")
        for key in ("record_every_min", "snapshot_every_h", "checkpoint_every_h"):
            minutes = getattr(self, key) * (60.0 if key.endswith("_h") else 1.0)
            ratio = minutes / self.dt_min
            if not math.isfinite(ratio):
                fail(key, f"must be a finite whole multiple of run.dt_min = {self.dt_min} min "
                          f"(got {getattr(self, key)})")
            elif abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
                fail(key, f"must be a whole multiple of run.dt_min = {self.dt_min} min "
                          f"(got {getattr(self, key)})")
        if self.snapshot_every_h * 60.0 < self.record_every_min:
            fail("snapshot_every_h", "must not be shorter than run.record_every_min")

    @property
    def dt_s(self) -> float:
        return self.dt_min * 60.0

    @property
    def n_steps(self) -> int:
        return int(round((self.end_day - self.start_day) * 1440.0 / self.dt_min))

    def every_steps(self, minutes: float) -> int:
        return int(round(minutes / self.dt_min))


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a run name (one file name under the output dir), or None."""
    if not name.strip():
        return "it is empty"
    if name.startswith("."):
        return "it must not start with '.'"
    bad = sorted({c for c in name if c in "/\\" or unicodedata.category(c).startswith("C")})
    if bad:
        return "it holds " + ", ".join(repr(c) for c in bad[:5]) + \
            " (no path separators or control characters)"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"it is {len(name.encode('utf-8', 'surrogatepass'))} bytes long, more than " \
            f"{MAX_NAME_BYTES}"
    return None


@dataclass(frozen=True)
class PatientParams(Section):
    """Patient covariates. Tumour burden may be given in cells or as a volume in mL."""

    tumour_burden_cells: float | None = param(None, unit="cells", ge=1e2, le=1e13,
                                              doc="total tumour cells B (default 9.5e10)")
    tumour_volume_ml: float | None = param(None, unit="mL", gt=0, le=1e4,
                                           doc="tumour volume; B = volume x 1e9 cells/mL")
    weight_kg: float = param(70.0, unit="kg", gt=1, le=300, doc="body weight")
    baseline_endothelial_activation: float = param(0.0, unit="1", ge=0, le=1,
                                                   doc="pre-existing endothelial activation")
    random_effects: bool = param(True, unit="-",
                                 doc="draw per-patient random effects from the seed (false: typical patient)")

    def check(self, fail):
        if self.tumour_burden_cells is not None and self.tumour_volume_ml is not None:
            fail("tumour_volume_ml", "cannot be given together with patient.tumour_burden_cells; "
                                     "give one of them")

    @property
    def burden_cells(self) -> float:
        if self.tumour_burden_cells is not None:
            return self.tumour_burden_cells
        if self.tumour_volume_ml is not None:
            return self.tumour_volume_ml * CELLS_PER_ML
        return 9.5e10


@dataclass(frozen=True)
class OutputParams(Section):
    """What a run writes."""

    dir: str = param("runs", unit="-", doc="output directory (relative to the working directory)")
    fields: bool = param(True, unit="-", doc="write field snapshots")
    cells: bool = param(True, unit="-", doc="write cell snapshots")
    compression: int = param(4, unit="-", ge=0, le=9, doc="gzip level of snapshot datasets")


@dataclass(frozen=True)
class Config(Section):
    """A complete, validated, frozen run configuration."""

    run: RunParams = section(RunParams)
    lattice: LatticeParams = section(LatticeParams)
    patient: PatientParams = section(PatientParams)
    product: ProductParams = section(ProductParams)
    tumour: TumourParams = section(TumourParams)
    myeloid: MyeloidParams = section(MyeloidParams)
    endothelium: EndothelialParams = section(EndothelialParams)
    fields: FieldParams = section(FieldParams)
    blood: BloodParams = section(BloodParams)
    lymphodepletion: LymphodepletionParams = section(LymphodepletionParams)
    kinetics: KineticsParams = section(KineticsParams)
    coupling: CouplingParams = section(CouplingParams)
    response: ResponseParams = section(ResponseParams)
    physiology: PhysiologyParams = section(PhysiologyParams)
    drugs: DrugParams = section(DrugParams)
    clinician: ClinicianParams = section(ClinicianParams)
    brain: BrainParams = section(BrainParams)
    events: EventParams = section(EventParams)
    output: OutputParams = section(OutputParams)

    def check(self, fail):
        n_sites = 1
        for s in self.lattice.shape:
            n_sites *= s
        if n_sites > MAX_SITES:
            fail("lattice.shape", f"has {n_sites} sites, more than {MAX_SITES} "
                                  f"(got {list(self.lattice.shape)})")
        free = n_sites * (1.0 - self.lattice.vessel_fraction)
        if self.tumour.initial_cells > free:
            fail("tumour.initial_cells", f"must fit into the {int(free)} non-vessel sites of "
                                         f"lattice.shape {list(self.lattice.shape)} "
                                         f"(got {self.tumour.initial_cells})")
        if self.coupling.mode == "direct" and bed_scale(self) > 2.0:
            fail("coupling.mode", f"'direct' needs the whole tumour in the patches, but the burden "
                                  f"{self.patient.burden_cells:.3g} cells is {bed_scale(self):.3g} times the "
                                  f"patches' tumour cells; use 'multiscale' or a burden <= 2 x the patch cells")
        if self.coupling.mode == "multiscale" and bed_scale(self) < 1.0:
            # the patches are regions sampled from the tumour: they cannot hold more of it than
            # there is
            fail("patient.tumour_burden_cells", f"{self.patient.burden_cells:.3g} cells is less than the "
                                         f"patches' {n_patches(self) * self.tumour.initial_cells} "
                                         f"tumour cells; raise it, lower tumour.initial_cells, or "
                                         f"use coupling.mode = 'direct'")
        if self.fields.solver == "explicit" and self.lattice.shape and len(self.lattice.shape) == 3 \
                and max(self.lattice.shape) > 256:
            fail("fields.solver", "'explicit' on a 3D lattice larger than 256 per side would need "
                                  "thousands of sub-steps per step; use 'implicit'")
