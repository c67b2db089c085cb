"""The stream ids as module constants: one integer id per random rule.

Every call into :mod:`abm.kernels.rng` names the rule it serves with one of
these ids, so two rules never read the same random numbers. The ids are
defined once, in :class:`abm.kernels.codes.Stream`; this module exports each
as a module-level ``int`` constant (Numba freezes them as compile-time
globals) and lists them by name in :data:`STREAMS`.

Rules for editing: ids are stable -- never renumber or reuse one, since that
would change every stored run; add a built-in rule's stream by appending a
member with the next free id to :class:`abm.kernels.codes.Stream`. Registered
CAR-T rules get theirs from :mod:`abm.kernels.registry`.
"""

from __future__ import annotations

from abm.kernels.codes import Stream

#: Name -> id of every built-in stream.
STREAMS: dict[str, int] = {s.name: int(s) for s in Stream}

# VESSEL_LAYOUT, TUMOUR_INIT, ..., BATCH_COVARIATES as plain ints
globals().update(STREAMS)


def stream_id(name: str) -> int:
    """The id of the rule called ``name``.

    Raises:
        KeyError: ``name`` is not registered; the message lists known names.
    """
    try:
        return STREAMS[name]
    except KeyError:
        known = ", ".join(sorted(STREAMS))
        raise KeyError(f"unknown random stream {name!r}; known streams: {known}") from None


__all__ = ["STREAMS", "stream_id", *STREAMS]
