"""The worker: claims ready jobs and runs each attempt through the executor.

One main thread claims, reaps expired leases, watches for cancellations and
does housekeeping; a pool of threads, one per slot, each waits on one
attempt's subprocess and then settles the job through ``jobs``. Several
workers, on one host or many, share the queue through the database alone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import peewee as pw

import jobs
import models
from errors import ErrandError
from models import InvocationStatus, utcnow
from runtime import invoke
from runtime.executor import AttemptOutcome, run_attempt
from settings import Settings, redacted_url

logger = logging.getLogger(__name__)

# How often the main loop asks whether running jobs were cancelled.
CANCEL_CHECK_S = 0.5
# How often finished jobs past the retention are purged.
PURGE_EVERY_S = 300.0
# How long the worker waits after a database error before trying again.
DATABASE_RETRY_S = 2.0


@dataclass
class Running:
    """An attempt in progress, and the switches that stop it."""

    claim: jobs.Claim
    cancel: threading.Event = field(default_factory=threading.Event)
    shutting_down: bool = False


class Worker:
    """Runs queued jobs until told to stop."""

    def __init__(
        self,
        config: Settings,
        *,
        concurrency: int,
        grace_s: float = 30.0,
        worker_id: str | None = None,
    ):
        self.config = config
        self.concurrency = concurrency
        self.grace_s = grace_s
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}"

        # Keyed by invocation id: one entry per claim, even if a job comes
        # back to this worker while an old attempt of it is still settling.
        self.running: dict[str, Running] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="attempt")

        # Reap often enough that a lost job waits little past its lease.
        self.reap_every_s = min(5.0, config.visibility_timeout_s / 4)

    def run(self) -> None:
        """Claim and run jobs until SIGTERM or SIGINT, then shut down cleanly."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        logger.info(
            "worker %s started: database %s, concurrency %d, visibility timeout %.0f s",
            self.id,
            redacted_url(self.config.database_url),
            self.concurrency,
            self.config.visibility_timeout_s,
        )

        try:
            self._loop()
        finally:
            self._shut_down()
        logger.info("worker %s stopped", self.id)

    def stop(self) -> None:
        """Stop claiming; :meth:`run` then drains and returns."""
        self.stopping.set()
        self.wake.set()

    def _on_signal(self, signum: int, frame) -> None:
        if self.stopping.is_set():
            logger.warning("second %s: not waiting any longer", _signame(signum))
            self.grace_s = 0
        else:
            logger.info(
                "%s: no new claims; running attempts get %.0f s to finish",
                _signame(signum),
                self.grace_s,
            )
        self.stop()

    def _loop(self) -> None:
        next_reap = next_purge = next_cancel_check = 0.0
        while not self.stopping.is_set():
            try:
                now = time.monotonic()
                if now >= next_reap:
                    jobs.reap(self.config.max_lost)
                    next_reap = now + self.reap_every_s
                if now >= next_purge:
                    jobs.purge(self.config.retention_days)
                    next_purge = now + PURGE_EVERY_S
                if now >= next_cancel_check:
                    self._forward_cancellations()
                    next_cancel_check = now + CANCEL_CHECK_S

                free = self.concurrency - len(self.running)
                claimed = self._claim(free) if free > 0 else 0
                if claimed and claimed == free:
                    continue  # there may be more ready work: ask again at once
            except pw.DatabaseError as exc:
                self._database_failed(exc)
                continue

            # Sleep until the next poll, or until an attempt frees its slot.
            timeout = self.config.poll_interval_s
            if self.running:
                timeout = min(timeout, CANCEL_CHECK_S)
            self.wake.wait(timeout)
            self.wake.clear()

    def _database_failed(self, exc: Exception) -> None:
        """Ride out a database that is locked, restarting or unreachable.

        Attempts already running go on; the connection is dropped so that the
        next step reconnects, after a pause that keeps the worker from
        hammering a database in trouble.
        """
        logger.warning(
            "worker %s: the database failed (%s: %s); retrying in %.0f s",
            self.id,
            type(exc).__name__,
            exc,
            DATABASE_RETRY_S,
        )
        models.db.close()
        self.stopping.wait(DATABASE_RETRY_S)

    def _claim(self, free: int) -> int:
        claims = jobs.claim(self.id, free, self.config.visibility_timeout_s)
        for claim in claims:
            running = Running(claim)
            with self.lock:
                self.running[claim.invocation_id] = running
            self.pool.submit(self._attempt, running)
        return len(claims)

    def _forward_cancellations(self) -> None:
        with self.lock:
            held = list(self.running.values())
        asked = jobs.cancel_requested([running.claim.job.id for running in held])
        for running in held:
            job_id = running.claim.job.id
            if job_id in asked and not running.cancel.is_set():
                logger.info("job %s: cancel requested; stopping its attempt", job_id)
                running.cancel.set()

    def _attempt(self, running: Running) -> None:
        """Run one attempt in a pool thread and settle its job."""
        claim = running.claim
        try:
            outcome, version = self._execute(running)
            self._settle(running, outcome, version)
        except Exception:
            # The lease still covers the job: if settling failed, it is
            # reaped and delivered again rather than lost.
            logger.exception(
                "job %s attempt %d: the worker failed to run or settle it",
                claim.job.id,
                claim.attempt,
            )
            models.db.close()  # this thread reconnects for its next attempt
        finally:
            with self.lock:
                self.running.pop(claim.invocation_id, None)
            self.wake.set()

    def _execute(self, running: Running) -> tuple[AttemptOutcome, int | None]:
        claim = running.claim
        try:
            spec, version = invoke.prepare(
                claim.job.function_id,
                json.loads(claim.job.event),
                job_id=claim.job.id,
                attempt=claim.attempt,
                settings=self.config,
            )
            return run_attempt(spec, running.cancel), version
        except ErrandError as exc:
            return _not_started(type(exc).__name__, exc.message), None
        except Exception as exc:
            # The job fails now, with the reason, rather than staying RUNNING
            # until its lease runs out.
            logger.exception("job %s: the attempt could not start", claim.job.id)
            return _not_started(type(exc).__name__, f"could not start: {exc}"), None

    def _settle(
        self, running: Running, outcome: AttemptOutcome, version: int | None
    ) -> None:
        claim = running.claim
        if outcome.status == InvocationStatus.SUCCEEDED:
            jobs.succeed(claim, outcome, version)
        elif outcome.status == InvocationStatus.CANCELLED and running.shutting_down:
            jobs.release(claim, "the worker shut down during the attempt")
        elif outcome.status == InvocationStatus.CANCELLED:
            jobs.stop(claim, outcome, version)
        else:
            jobs.fail(
                claim,
                outcome,
                version,
                backoff_base_s=self.config.backoff_base_s,
                backoff_cap_s=self.config.backoff_cap_s,
            )

    def _shut_down(self) -> None:
        """Let running attempts finish within the grace, then stop the rest.

        A stopped attempt's job goes back to ``PENDING`` without spending
        the attempt, so shutting down loses nothing.
        """
        # A second signal sets the grace to zero: read it on every turn.
        stopped_at = time.monotonic()
        while self.running and time.monotonic() < stopped_at + self.grace_s:
            try:
                self._forward_cancellations()
            except pw.DatabaseError as exc:
                logger.warning("worker %s: the database failed: %s", self.id, exc)
            self.wake.wait(CANCEL_CHECK_S)
            self.wake.clear()

        with self.lock:
            left = list(self.running.values())
        for running in left:
            logger.warning(
                "job %s attempt %d: still running after the grace; stopping it",
                running.claim.job.id,
                running.claim.attempt,
            )
            running.shutting_down = True
            running.cancel.set()
        self.pool.shutdown(wait=True)


def _not_started(error_type: str, message: str) -> AttemptOutcome:
    """The outcome of an attempt that failed before its handler could run."""
    now = utcnow()
    return AttemptOutcome(
        status=InvocationStatus.FAILED,
        error=f"{error_type}: {message}",
        error_type=error_type,
        started_at=now,
        finished_at=now,
        duration_ms=0.0,
    )


def _signame(signum: int) -> str:
    return signal.Signals(signum).name
