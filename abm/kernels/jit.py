"""The one place that owns Numba options.

Every compiled function in the project is created through :func:`jit` (serial)
or :func:`pjit` (may use ``prange``). Options fixed here:

* ``cache=True``: compiled machine code is stored on disk so a second process
  loads it instead of recompiling. Numba checks only the timestamp of the file
  that defines a function, not of the kernels it calls, so a cached kernel can
  go stale when a callee in another file changes. The cache therefore lives in
  a folder keyed by a hash of every source file in ``abm/kernels`` (and the
  Numba version): ``$NUMBA_CACHE_DIR/<hash>`` if that variable is set, else
  ``~/.cache/cart-abm/numba/<hash>``. Any kernel edit starts a fresh cache.
* ``fastmath=False``: results must be bit-identical with the JIT on and off
  and across thread counts, so no re-association or contraction.
* ``error_model="numpy"``: division by zero gives inf/nan instead of raising,
  as NumPy does, so the no-JIT path behaves the same.
* ``nogil=True``: kernels release the GIL.

Two things differ from a plain ``numba.njit`` dispatcher (:class:`Dispatcher`):

* a call from compiled code with a constant argument does not compile a
  separate specialisation per constant (literal argument types are widened);
* compiling a kernel takes a file lock in the cache folder, one per kernel,
  so processes sharing the cache never compile the same kernel at once: a
  process that reaches a kernel another one is compiling waits, then loads
  it from the cache. Helper processes can therefore fill the cache in
  parallel with the main one (:mod:`abm.io.warmup`), and the processes of a
  batch on an empty cache compile each kernel once between them. The call
  graph of the kernels has no cycles, so the locks cannot deadlock; a lock
  held longer than :data:`LOCK_TIMEOUT_S` is ignored (the kernel is then
  compiled anyway), and a process that dies releases its locks.

:func:`compile_stats` sums cache hits and misses over every dispatcher made
here, so a test can assert that a second process does not recompile.
:func:`registered_kernels` lists every function compiled through here
(module, name, Python function), so a test can check all kernel signatures.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import time
from collections import namedtuple
from pathlib import Path
from typing import Callable

import numba
from numba.core import sigutils
from numba.core import types as _types
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import CPUDispatcher

try:
    import fcntl
except ImportError:   # Windows: no compile locks (each process compiles on its own)
    fcntl = None

JIT_DISABLED: bool = bool(numba.config.DISABLE_JIT)


def _kernel_source_hash() -> str:
    h = hashlib.sha256(numba.__version__.encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _cache_dir() -> str:
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cart-abm", "numba")
    return os.path.join(base, _kernel_source_hash())


CACHE_DIR: str = _cache_dir()
numba.config.CACHE_DIR = CACHE_DIR

_DISPATCHERS: list = []

#: One entry per function passed to :func:`jit` / :func:`pjit`.
KernelInfo = namedtuple("KernelInfo", ["module", "name", "py_func"])
_REGISTRY: list = []

_BASE_OPTIONS = dict(fastmath=False, error_model="numpy", nogil=True)


#: Longest wait (s) for another process's compile of a kernel; then this one compiles it too.
LOCK_TIMEOUT_S = 900.0
_LOCK_POLL_S = 0.02
_HELD_LOCKS: set = set()   # lock files this process holds (nested compiles re-enter)


@contextlib.contextmanager
def _compile_lock(name: str):
    """Hold the cache folder's file lock ``name`` (no-op where locks are unavailable)."""
    path = os.path.join(CACHE_DIR, "locks", name + ".lock")
    if fcntl is None or path in _HELD_LOCKS:
        yield
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:   # a read-only cache: nothing to share anyway
        yield
        return
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        locked = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except OSError as exc:
                # held by another process: wait; any other error (a file system without
                # locks): compile without
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES) \
                        or time.monotonic() > deadline:
                    break
                time.sleep(_LOCK_POLL_S)
        _HELD_LOCKS.add(path)
        try:
            yield
        finally:
            _HELD_LOCKS.discard(path)
            if locked:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class Dispatcher(CPUDispatcher):
    """Numba's CPU dispatcher with one specialisation per call signature and a compile lock.

    A call from compiled code whose argument is a constant (``uniform(key,
    id, 0)``) types that argument as a literal (a ``Literal[int]`` of value 0), and
    Numba's dispatcher compiles a separate specialisation for every distinct
    constant: the same helper was compiled up to six times for one step.
    Here literal argument types are widened to their base types before the
    lookup, so each kernel is compiled once per non-literal signature. The
    machine code is the same (LLVM inlines and propagates the constant in
    the caller), and no kernel here dispatches on a literal value.

    A signature not compiled in this process yet is loaded from the on-disk
    cache or compiled while holding the kernel's file lock (see the module
    documentation).
    """

    def get_call_template(self, args, kws):
        args = tuple(_types.unliteral(a) for a in args)
        kws = {k: _types.unliteral(v) for k, v in kws.items()}
        return super().get_call_template(args, kws)

    #: Name of the kernel's compile lock (None: no cache, no lock; also for a dispatcher
    #: rebuilt from a pickle).
    _cache_lock = None

    def compile(self, sig):
        lock = self._cache_lock
        if lock is None or tuple(sigutils.normalize_signature(sig)[0]) in self.overloads:
            return super().compile(sig)
        # Numba's own lock first, so one thread of this process holds file locks at a time
        with global_compiler_lock, _compile_lock(lock):
            return super().compile(sig)


def _wrap(fn: Callable | None, parallel: bool, cache: bool = True, **extra):
    options = dict(_BASE_OPTIONS, parallel=parallel, nopython=True, boundscheck=None, **extra)

    def decorate(f: Callable):
        _REGISTRY.append(KernelInfo(f.__module__, f.__qualname__, f))
        if JIT_DISABLED:
            return f
        dispatcher = Dispatcher(py_func=f, locals={}, targetoptions=dict(options))
        if cache:
            dispatcher.enable_caching()
            dispatcher._cache_lock = f"{f.__module__}.{f.__qualname__}"
        _DISPATCHERS.append(dispatcher)
        return dispatcher

    return decorate(fn) if fn is not None else decorate


def jit(fn: Callable | None = None, **extra):
    """Compile ``fn`` in nopython mode with the project's options (serial)."""
    return _wrap(fn, parallel=False, **extra)


def pjit(fn: Callable | None = None, **extra):
    """Like :func:`jit` but with ``parallel=True`` so ``numba.prange`` runs on threads.

    Kernels compiled this way must not depend on scheduling: no floating-point
    reductions across ``prange`` iterations, no shared writes.
    """
    return _wrap(fn, parallel=True, **extra)


def compile_stats() -> dict:
    """Cache hits and misses over every compiled function created so far.

    A *miss* means the function was compiled in this process; a *hit* means
    machine code was loaded from the on-disk cache.
    """
    hits = misses = 0
    for d in _DISPATCHERS:
        stats = d.stats
        hits += sum(stats.cache_hits.values())
        misses += sum(stats.cache_misses.values())
    return {"cache_hits": hits, "cache_misses": misses,
            "functions": len(_DISPATCHERS), "jit_disabled": JIT_DISABLED}


def registered_kernels() -> list:
    """Every function compiled through :func:`jit` / :func:`pjit` so far (:class:`KernelInfo`).

    Recorded at decoration time (also with the JIT disabled), so importing a
    module registers all its kernels.
    """
    return list(_REGISTRY)


def resolved(kernel, args: tuple) -> Callable:
    """The compiled entry of ``kernel`` for the types of ``args``, skipping per-call type dispatch.

    A dispatcher finds the machine code for a call by typing every argument;
    for named tuples of arrays (the kernels' argument bundles) that costs
    ~8 us per call, which a kernel called once per step on a small patch
    notices. The entry returned here takes arguments of exactly these types
    only: the caller must resolve again whenever an argument's type may change
    (e.g. when a bundle is rebuilt). With the JIT disabled, or before the
    kernel was compiled for these types, this is ``kernel`` itself, and so it
    is for a plain function standing in for a kernel (the per-kernel timers of
    ``benchmarks/bench_patient.py``).
    """
    if JIT_DISABLED or not hasattr(kernel, "typeof_pyval"):
        return kernel
    sig = tuple(kernel.typeof_pyval(a) for a in args)
    cres = kernel.overloads.get(sig)
    return kernel if cres is None else cres.entry_point


def set_threads(n: int | None) -> int:
    """Set the number of Numba threads (None: leave as is). Returns the count in use."""
    if JIT_DISABLED:
        return 1
    if n is not None:
        n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
        numba.set_num_threads(n)
    return numba.get_num_threads()


__all__ = ["jit", "pjit", "compile_stats", "registered_kernels", "KernelInfo", "set_threads",
           "resolved", "JIT_DISABLED"]
