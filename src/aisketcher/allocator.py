"""Keep glibc's allocator from handing big tensors back to the kernel after every use.

A training step allocates and frees the same large activation and gradient buffers at every decoder
step. With glibc's defaults, blocks above a dynamic threshold are mmap'ed and unmapped each time (and
the heap top is trimmed), so every reuse faults its pages in again: on this project's 2-core machine a
Sketch-RNN step over long sketches spent as much time in the kernel as in user code. Raising the mmap
and trim thresholds keeps freed memory in the process for reuse; the cost is a resident size that
stays at its peak, which a training process reaches anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

# mallopt parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

TRIM_THRESHOLD = 1024 * 1024 * 1024
TOP_PAD = 64 * 1024 * 1024

ENV_SWITCH = "AISKETCHER_MALLOC"  # set to 0 to keep the C library's defaults


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, looked up once (find_library runs ldconfig: 1.8 ms a call)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_free_memory() -> None:
    """Hand the heap's free pages back to the kernel (glibc's malloc_trim), after a phase whose
    allocations differ from a training step's (a validation, a prior fit): their freed blocks
    would otherwise stay resident beside the step's, so that the peak would grow with the number
    of batches such a phase runs until fragmentation settles."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None and os.environ.get(ENV_SWITCH, "1") != "0":
        trim(ctypes.c_size_t(0))


def tune_allocator() -> bool:
    """Apply the settings through mallopt; True when glibc took all of them.

    Without glibc (macOS, musl) or with AISKETCHER_MALLOC=0 this does nothing. Settings given by
    the user through glibc's own MALLOC_*_ variables win: those parameters are left alone.
    """
    libc = _libc()
    if os.environ.get(ENV_SWITCH, "1") == "0" or libc is None:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = {
        "MALLOC_MMAP_MAX_": (M_MMAP_MAX, 0),
        "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        "MALLOC_TOP_PAD_": (M_TOP_PAD, TOP_PAD),
    }
    ok = True
    for env, (param, value) in settings.items():
        if env not in os.environ:
            ok = bool(mallopt(param, value)) and ok
    return ok
