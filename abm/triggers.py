"""Triggers decide on which steps a writer or recorder fires.

An ``int`` given where a trigger is expected means "every N steps".
"""

from __future__ import annotations

from typing import Iterable


class Trigger:
    """Base class: ``trigger(step) -> bool``."""

    def __call__(self, step: int) -> bool:  # pragma: no cover - interface
        raise NotImplementedError


class Periodic(Trigger):
    """Fires when ``(step - phase) % every == 0`` and ``step >= phase``."""

    def __init__(self, every: int, phase: int = 0):
        if every < 1:
            raise ValueError(f"Periodic trigger needs every >= 1 (got {every})")
        self.every, self.phase = int(every), int(phase)

    def __call__(self, step: int) -> bool:
        return step >= self.phase and (step - self.phase) % self.every == 0

    def __repr__(self) -> str:
        return f"Periodic(every={self.every}, phase={self.phase})"


class AtSteps(Trigger):
    """Fires on an explicit set of steps (e.g. given times converted to steps)."""

    def __init__(self, steps: Iterable[int]):
        self.steps = frozenset(int(s) for s in steps)

    def __call__(self, step: int) -> bool:
        return step in self.steps

    def __repr__(self) -> str:
        return f"AtSteps({sorted(self.steps)})"


class Any_(Trigger):
    """Fires when any of its triggers fires."""

    def __init__(self, *triggers: Trigger):
        self.triggers = triggers

    def __call__(self, step: int) -> bool:
        return any(t(step) for t in self.triggers)


def as_trigger(value) -> Trigger:
    """Coerce an int (every N steps) or a Trigger into a Trigger."""
    if isinstance(value, Trigger):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Periodic(value)
    raise TypeError(f"expected a Trigger or an int, got {value!r}")
