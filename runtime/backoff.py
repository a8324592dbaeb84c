"""How long a failed job waits before its next attempt."""

from __future__ import annotations

import random

# Past this many doublings the delay is at its cap anyway; stopping here keeps
# a job with a huge attempt number from computing an absurd power of two.
MAX_DOUBLINGS = 32

JITTER = 0.2


def retry_delay_s(attempt: int, base_s: float, cap_s: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (from 1).

    Exponential: ``base_s``, twice that, four times, ... never above
    ``cap_s``, each spread by up to 20% either way so that jobs that failed
    together do not all come back in the same instant.
    """
    doublings = min(max(attempt - 1, 0), MAX_DOUBLINGS)
    delay = min(cap_s, base_s * 2**doublings)
    return min(cap_s, delay * random.uniform(1 - JITTER, 1 + JITTER))
