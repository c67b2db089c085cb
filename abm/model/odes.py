"""Exact one-step updates for the small linear ODEs of the well-mixed compartments.

Every well-mixed state (plasma concentrations, drug amounts, activation
levels, cell pools) is advanced over one step ``dt`` with its rates frozen at
the start of the step, using the exact solution of the frozen linear ODE.
This is unconditionally stable and keeps non-negative quantities
non-negative, whatever the rate constants.
"""

from __future__ import annotations

import math


def phi1(lam: float, dt: float) -> float:
    """``(1 - exp(-lam dt)) / lam``, equal to ``dt`` at ``lam = 0`` (accurate for small lam)."""
    x = lam * dt
    if x == 0.0:
        return dt
    return -math.expm1(-x) / lam


def relax(c: float, production: float, lam: float, dt: float) -> float:
    """Exact step of ``dc/dt = production - lam c`` (production and lam >= 0 frozen).

    ``c(dt) = c exp(-lam dt) + production (1 - exp(-lam dt)) / lam``; with
    ``lam = 0`` it is ``c + production dt``.
    """
    return c * math.exp(-lam * dt) + production * phi1(lam, dt)


def relax_to(c: float, target: float, rate: float, dt: float) -> float:
    """Exact step of ``dc/dt = rate (target - c)``: first-order approach to ``target``."""
    return target + (c - target) * math.exp(-rate * dt)


def linear2(a11: float, a12: float, a21: float, a22: float, x: float, y: float,
            dt: float) -> tuple[float, float]:
    """Exact step of the 2x2 linear system ``d(x, y)/dt = A (x, y)``.

    ``A`` must be Metzler (off-diagonals ``a12, a21 >= 0``): then its
    eigenvalues are real and ``exp(A dt)`` is non-negative, so non-negative
    ``x, y`` stay non-negative. Uses ``exp(A t) = e^(mu t) [cosh(nu t) I +
    sinh(nu t)/nu (A - mu I)]`` with ``mu = tr/2``, ``nu = sqrt(tr^2/4 - det)``.
    """
    mu = 0.5 * (a11 + a22)
    half = 0.5 * (a11 - a22)
    disc = half * half + a12 * a21
    nu = math.sqrt(disc) if disc > 0.0 else 0.0
    if nu * dt > 300.0:
        # cosh and sinh alone would overflow (fast rates): combine them with e^(mu t)
        # first, e^((mu +- nu) t), whose largest is e^(largest eigenvalue t)
        ep, em = math.exp((mu + nu) * dt), math.exp((mu - nu) * dt)
        ech, esh = 0.5 * (ep + em), 0.5 * (ep - em) / nu
        m11 = ech + esh * (a11 - mu)
        m12 = esh * a12
        m21 = esh * a21
        m22 = ech + esh * (a22 - mu)
        return m11 * x + m12 * y, m21 * x + m22 * y
    e = math.exp(mu * dt)
    ch = math.cosh(nu * dt)
    sh = math.sinh(nu * dt) / nu if nu * dt > 1e-12 else dt
    m11 = e * (ch + sh * (a11 - mu))
    m12 = e * sh * a12
    m21 = e * sh * a21
    m22 = e * (ch + sh * (a22 - mu))
    return m11 * x + m12 * y, m21 * x + m22 * y


def hill(x: float, ec50: float, n: float) -> float:
    """``x^n / (ec50^n + x^n)`` for ``x >= 0`` (0 at x = 0)."""
    if x <= 0.0:
        return 0.0
    r = (x / ec50) ** n
    return r / (1.0 + r)
