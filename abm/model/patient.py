"""The patient-level processes: drugs, blood, physiology, clinician and CRS grade.

The models live in their own modules (:mod:`abm.model.drugs`,
:mod:`abm.model.blood`, :mod:`abm.model.physiology`,
:mod:`abm.model.clinician`) next to their parameter sections and know
nothing of processes; the thin :class:`~abm.process.Process` wrappers here
plug them into a :class:`~abm.simulation.Simulation`.

Order within a step (registration order within each phase)::

    tissue_to_blood:  DrugProcess       PK over dt; il6r_occupancy, steroid_effect, il1r_blockade
                      WholePatientProcess  patch rates (restriction), infusion, CAR-T pools, the whole
                                        tumour, B cells
                      BloodProcess      tumour-plasma exchange, plasma cytokines, myeloid pool,
                                        lymphocytes and IL-7/IL-15, metabolites, ANG/VWF
    patient:          PhysiologyProcess temperature, systemic endothelial activation, fluids, vitals
                      ClinicianProcess  ward assessment, support and drugs, vitals with the new support
                      CRSProcess        ASTCT CRS grade, episodes, events
                      ResponseProcess   Lugano-like response of the whole tumour
"""

from __future__ import annotations

from abm.model.blood import Blood
from abm.model.brain import Brain, ICANSGrade
from abm.model.clinician import Clinician, CRSGrade
from abm.model.drugs import Drugs
from abm.model.events import PostInfusionEvents
from abm.model.kinetics import WholePatient
from abm.model.physiology import Physiology
from abm.model.response import TumourResponse
from abm.process import Process


class _ModelProcess(Process):
    """A process that delegates to a model object built from the simulation."""

    model_class: type = object

    def __init__(self, sim):
        super().__init__(sim)
        self.model = self.model_class(sim)

    def step(self, state):
        self.model.step(state)

    def record(self, state, row):
        self.model.record(state, row)

    def endpoints(self, state, out):
        self.model.endpoints(state, out)


class DrugProcess(_ModelProcess):
    """Drug PK/PD (:class:`abm.model.drugs.Drugs`)."""

    phase, model_class, meta = Drugs.phase, Drugs, Drugs.meta


class WholePatientProcess(_ModelProcess):
    """CAR-T pools, the whole tumour and B cells (:class:`abm.model.kinetics.WholePatient`)."""

    phase, model_class, meta = WholePatient.phase, WholePatient, WholePatient.meta


class ResponseProcess(_ModelProcess):
    """Lugano-like response of the whole tumour (:class:`abm.model.response.TumourResponse`)."""

    phase, model_class, meta = TumourResponse.phase, TumourResponse, TumourResponse.meta


class BloodProcess(_ModelProcess):
    """The blood compartment (:class:`abm.model.blood.Blood`)."""

    phase, model_class, meta = Blood.phase, Blood, Blood.meta


class PhysiologyProcess(_ModelProcess):
    """Temperature, leak, MAP, SpO2 (:class:`abm.model.physiology.Physiology`)."""

    phase, model_class, meta = Physiology.phase, Physiology, Physiology.meta


class ClinicianProcess(_ModelProcess):
    """The virtual clinician (:class:`abm.model.clinician.Clinician`)."""

    phase, model_class, meta = Clinician.phase, Clinician, Clinician.meta


class CRSProcess(_ModelProcess):
    """The continuous ASTCT CRS grade (:class:`abm.model.clinician.CRSGrade`)."""

    phase, model_class, meta = CRSGrade.phase, CRSGrade, CRSGrade.meta


class BrainProcess(_ModelProcess):
    """Brain barrier, neuro-inflammation and the ICANS grade (:class:`abm.model.brain.Brain`)."""

    phase, model_class, meta = Brain.phase, Brain, Brain.meta


class EventsProcess(_ModelProcess):
    """Infusion reaction and laboratory TLS (:class:`abm.model.events.PostInfusionEvents`)."""

    phase, model_class, meta = PostInfusionEvents.phase, PostInfusionEvents, PostInfusionEvents.meta


class ICANSProcess(_ModelProcess):
    """ICANS episodes and events (:class:`abm.model.brain.ICANSGrade`)."""

    phase, model_class, meta = ICANSGrade.phase, ICANSGrade, ICANSGrade.meta


#: Registered by :func:`abm.build.default_processes`, in this order.
PATIENT_PROCESSES = [DrugProcess, WholePatientProcess, BloodProcess, PhysiologyProcess, BrainProcess,
                     EventsProcess, ClinicianProcess, CRSProcess, ICANSProcess, ResponseProcess]

#: The patient processes that need no tissue patch (all but the whole-patient cell
#: kinetics): for driving the physiology, clinician and brain with synthetic tumour output.
SYSTEMIC_PROCESSES = [p for p in PATIENT_PROCESSES if p is not WholePatientProcess]
