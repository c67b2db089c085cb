"""Every compiled kernel takes at most MAX_PARAMS parameters (arrays travel in named bundles)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import numpy as np

import abm.kernels
from abm.kernels.jit import jit, registered_kernels

MAX_PARAMS = 15


def _import_all_kernel_modules() -> None:
    for mod in pkgutil.iter_modules(abm.kernels.__path__):
        importlib.import_module(f"abm.kernels.{mod.name}")


def _build_factory_kernels() -> None:
    """Call the stepper factories on tiny inputs, so anything they compile is registered too."""
    from abm.kernels import diffusion_explicit, diffusion_implicit, source_sink
    shape = (2, 4, 4)
    diffusion_implicit.make_implicit_stepper(shape, 10.0, 1.0, 1.0, 0.0, parallel=False)
    diffusion_explicit.make_explicit_stepper(shape, 10.0, 1.0, 1.0, 0.0, parallel=False)
    source_sink.make_source_sink_stepper(shape, 10.0, 1.0, np.zeros(2), parallel=False)


def too_many_params(kernels, limit: int = MAX_PARAMS) -> list[str]:
    """``module.name (n)`` of every kernel with more than ``limit`` parameters."""
    return [f"{k.module}.{k.name} ({n})" for k in kernels
            if (n := len(inspect.signature(k.py_func).parameters)) > limit]


def test_no_kernel_has_more_than_15_parameters():
    _import_all_kernel_modules()
    _build_factory_kernels()
    kernels = [k for k in registered_kernels() if k.module.startswith("abm.")]
    modules = {k.module for k in kernels}
    # the registry really holds the kernels of every solver and rule module
    for name in ("cells_step", "cells_cart", "cells_tumour", "diffusion_implicit",
                 "diffusion_explicit", "source_sink", "rng"):
        assert f"abm.kernels.{name}" in modules
    assert len(kernels) > 50
    assert too_many_params(kernels) == []


def test_the_check_flags_a_kernel_with_16_parameters():
    def wide(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15):
        return a0

    wide_kernel = jit(wide)   # registered, never called (nothing is compiled)
    assert wide_kernel is not None
    offenders = too_many_params([k for k in registered_kernels() if k.py_func is wide])
    assert offenders == [f"{__name__}.test_the_check_flags_a_kernel_with_16_parameters.<locals>.wide (16)"]
