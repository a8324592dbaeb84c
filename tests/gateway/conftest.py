"""Gateway fixtures: moving jobs along through the verbs a worker calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pytest

import jobs
from models import InvocationStatus, utcnow

WORKER_ID = "test-worker"
VISIBILITY_S = 60.0


@dataclass
class Outcome:
    """How an attempt ended, with the attributes the job verbs read."""

    status: InvocationStatus = InvocationStatus.SUCCEEDED
    result: object = None
    error: str | None = None
    traceback: str | None = None
    logs: str = ""
    exit_code: int | None = 0
    peak_memory_kb: int | None = 1024
    duration_ms: float = 12.0
    finished_at: datetime = field(default_factory=utcnow)


@pytest.fixture
def claim_next(database):
    """Claim the best ready job, as a worker would; the job is ``RUNNING``."""

    def claim() -> jobs.Claim:
        (taken,) = jobs.claim(WORKER_ID, 1, VISIBILITY_S)
        return taken

    return claim


@pytest.fixture
def finish_next(claim_next):
    """Claim the best ready job and end its attempt.

    ``finish_next(result=...)`` succeeds it; ``finish_next(error="...")``
    fails it, to be retried at once or buried on its last attempt.
    """

    def finish(result: object = None, error: str | None = None) -> jobs.Claim:
        claim = claim_next()
        if error is None:
            jobs.succeed(claim, Outcome(result=result), 1)
        else:
            outcome = Outcome(InvocationStatus.FAILED, error=error, exit_code=1)
            jobs.fail(claim, outcome, 1, backoff_base_s=0, backoff_cap_s=0)
        return claim

    return finish


@pytest.fixture
def make_outcome():
    """Build an attempt's outcome: ``make_outcome(result=1)``."""
    return Outcome
