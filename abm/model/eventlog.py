"""The event log shared by the patient-level processes."""

from __future__ import annotations


def log_event(state, t: float, kind: str, grade: int, detail: str) -> None:
    """Append ``(time_day, kind, grade, detail)`` to ``state.events`` (written to ``/events``)."""
    events = getattr(state, "events", None)
    if events is not None:
        events.append((t, kind, int(grade), detail))
