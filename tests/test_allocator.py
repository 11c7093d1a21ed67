"""The allocator settings stop big tensors from being faulted in again at every reuse."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import resource
import numpy as np
from aisketcher.allocator import tune_allocator
print(int(tune_allocator()))
for _ in range(2):  # warm up: the heap grows once
    np.ones(64 * 1024 * 1024 // 8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, allocated, written and freed
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(switch: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["AISKETCHER_MALLOC"] = switch
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return bool(int(out[0])), int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_allocator_reuses_memory_without_page_faults() -> None:
    applied, tuned = _faults("1")
    skipped, default = _faults("0")
    assert applied and not skipped
    pages = 10 * 64 * 1024 * 1024 // 4096
    assert tuned < pages // 100  # every block reused from the heap, already mapped
    assert default > tuned  # glibc's defaults map a 64 MiB block anew at each allocation
