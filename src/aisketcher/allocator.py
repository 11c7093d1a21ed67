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
import os
import sys

# mallopt parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

TRIM_THRESHOLD = 1024 * 1024 * 1024
TOP_PAD = 64 * 1024 * 1024

ENV_SWITCH = "AISKETCHER_MALLOC"  # set to 0 to keep the C library's defaults


def tune_allocator() -> bool:
    """Apply the settings through mallopt; True when glibc took all of them.

    Without glibc (macOS, musl) or with AISKETCHER_MALLOC=0 this does nothing. Settings given by
    the user through glibc's own MALLOC_*_ variables win: those parameters are left alone.
    """
    if os.environ.get(ENV_SWITCH, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
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
