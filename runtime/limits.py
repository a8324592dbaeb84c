"""The resource limits an attempt runs under.

The executor decides the numbers here; the bootstrap applies them inside the
child, before any of the function's code is imported. Limits are plain
``(soft, hard)`` pairs keyed by the name of the ``resource.RLIMIT_*``
constant, so they travel to the child as JSON.
"""

from __future__ import annotations

import math

from settings import MiB

# Enough descriptors for a handler that talks to a few services, few enough
# that a leak in a loop fails fast instead of starving the worker's host.
MAX_OPEN_FILES = 1024

# The largest file an attempt may write, its logs included.
MAX_FILE_BYTES = 256 * MiB

# CPU seconds allowed beyond the wall-clock timeout. A single-threaded handler
# cannot reach this limit before its timeout; a handler burning several cores
# can, and the limit stops it without waiting for the wall clock.
CPU_SLACK_S = 1

# The CPU hard limit sits this far above the soft one, so the kernel first
# sends SIGXCPU (which the executor reports as a CPU timeout) and only then
# SIGKILL, should the handler catch or ignore SIGXCPU.
CPU_HARD_MARGIN_S = 1


def rlimits_for(memory_mb: int, timeout_s: float) -> dict[str, tuple[int, int]]:
    """The ``(soft, hard)`` limits of an attempt, by ``RLIMIT_*`` name.

    Soft and hard are equal wherever they can be, so the handler cannot raise
    a limit it was given.
    """
    address_space = memory_mb * MiB
    cpu_s = math.ceil(timeout_s) + CPU_SLACK_S
    return {
        "RLIMIT_AS": (address_space, address_space),
        "RLIMIT_CPU": (cpu_s, cpu_s + CPU_HARD_MARGIN_S),
        "RLIMIT_NOFILE": (MAX_OPEN_FILES, MAX_OPEN_FILES),
        "RLIMIT_FSIZE": (MAX_FILE_BYTES, MAX_FILE_BYTES),
        # No core files: a crashing handler should not fill the disk.
        "RLIMIT_CORE": (0, 0),
    }
