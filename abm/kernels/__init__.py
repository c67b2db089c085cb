"""Numba kernels: pure functions on flat arrays.

Modules here import only numpy, numba, math and :mod:`abm.kernels.jit` -- no
config objects, no files, no logging. Kernels are built by ``make_*``
factories that capture constants and return a compiled function; every kernel
also runs with ``NUMBA_DISABLE_JIT=1`` and gives the same numbers.
"""
