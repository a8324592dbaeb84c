"""Every change of a job's status, as a small closed set of verbs.

The gateway enqueues, requeues and cancels; workers claim, succeed, fail,
stop, release and reap. Nothing else writes ``Job.status``. Each verb is one
short transaction, and each logs one line for the state change it makes.

A worker's write is guarded by the token of the claim it holds: a worker
that lost its lease cannot overwrite the outcome of the worker that took the
job over.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee as pw

import models
from errors import Conflict, NotFound
from models import (
    Function,
    Invocation,
    InvocationStatus,
    Job,
    JobStatus,
    iso_utc,
    utcnow,
)
from runtime.backoff import retry_delay_s

logger = logging.getLogger(__name__)

PENDING = JobStatus.PENDING.value
RUNNING = JobStatus.RUNNING.value

# Two workers claiming at once on PostgreSQL take turns on this lock, so
# that concurrency limits are counted against committed claims only.
CLAIM_LOCK_ID = 0x45_52_52_41_4E_44  # "ERRAND"

# A claim reads this many candidates per free slot, so that jobs of a full
# concurrency key in the first rows do not leave the other slots idle.
CANDIDATES_PER_SLOT = 4


@dataclass
class Claim:
    """A job a worker holds, and the invocation recording this attempt."""

    job: Job
    invocation_id: str
    worker_id: str

    @property
    def attempt(self) -> int:
        return self.job.attempts

    def guard(self) -> pw.Expression:
        """True only while the job is still held by this very claim.

        The token, not the worker and attempt number, tells claims apart: a
        job reaped and then claimed again by the same worker has the same
        attempt number, but a new token.
        """
        return (
            (Job.id == self.job.id)
            & (Job.status == RUNNING)
            & (Job.claim_token == self.job.claim_token)
        )


def get(job_id: str) -> Job:
    """The job ``job_id``, or the envelope's 404."""
    job = Job.get_or_none(Job.id == job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job


def enqueue(
    function_id: str,
    *,
    event: Any = None,
    max_attempts: int = 1,
    priority: int = 0,
    idempotency_key: str | None = None,
    concurrency_key: str | None = None,
    concurrency_limit: int | None = None,
    run_at: datetime | None = None,
    delay_seconds: float | None = None,
) -> tuple[Job, bool]:
    """Store a new ``PENDING`` job; returns it and whether it is new.

    With an ``idempotency_key`` already used for this function, no job is
    made and the original is returned. The unique index decides, so two racing
    requests still make exactly one job.
    """
    if not Function.select().where(Function.id == function_id).exists():
        raise NotFound(f"no function {function_id!r}")

    now = utcnow()
    if concurrency_key is not None and concurrency_limit is None:
        concurrency_limit = 1
    try:
        with models.db.atomic():
            job = Job.create(
                function_id=function_id,
                event=json.dumps(event),
                max_attempts=max_attempts,
                priority=priority,
                idempotency_key=idempotency_key,
                concurrency_key=concurrency_key,
                concurrency_limit=concurrency_limit,
                created_at=now,
                run_at=_start_time(now, run_at, delay_seconds),
            )
    except pw.IntegrityError:
        original = Job.get_or_none(
            (Job.function_id == function_id) & (Job.idempotency_key == idempotency_key)
        )
        if idempotency_key is None or original is None:
            raise
        logger.info(
            "job %s deduplicated (function %s)",
            original.id,
            function_id,
            extra={"action": "deduplicated", "job_id": original.id},
        )
        return original, False

    _log("enqueued", job, "run at %s", iso_utc(job.run_at))
    return job, True


def _start_time(
    now: datetime, run_at: datetime | None, delay_seconds: float | None
) -> datetime:
    """When a new job becomes ready: never before it was made."""
    if delay_seconds is not None:
        return now + timedelta(seconds=delay_seconds)
    return max(run_at or now, now)


def claim(worker_id: str, slots: int, visibility_timeout_s: float) -> list[Claim]:
    """Take up to ``slots`` ready jobs for ``worker_id``, best first.

    Ready means ``PENDING`` with ``run_at`` reached; best means highest
    priority, then oldest ``run_at``, then oldest job, the order of the
    ``job_claim_order`` index. A job whose concurrency key already has its
    limit of running jobs is passed over, not waited for.
    """
    if slots <= 0:
        return []

    # A read first: an idle worker then polls without taking the write lock.
    # TODO: this read ignores concurrency limits, so a deep backlog behind a
    # full key still takes the write lock on every poll, to claim nothing.
    ready = Job.select(Job.id).where((Job.status == PENDING) & (Job.run_at <= utcnow()))
    if not ready.exists():
        return []

    with models.write_transaction():
        if isinstance(models.db.obj, pw.PostgresqlDatabase):
            models.db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK_ID,))
        # The lease starts once the lock is held, however long that took.
        now = utcnow()
        chosen = _pick_ready(now, slots)
        if not chosen:
            return []

        lease = now + timedelta(seconds=visibility_timeout_s)
        taken = list(
            Job.update(
                status=RUNNING,
                worker_id=worker_id,
                claim_token=models.new_id(),
                attempts=Job.attempts + 1,
                started_at=now,
                lease_expires_at=lease,
            )
            .where(Job.id.in_(chosen) & (Job.status == PENDING))
            .returning(Job)
            .execute()
        )
        claims = [Claim(job, models.new_id(), worker_id) for job in taken]
        Invocation.insert_many(
            [
                {
                    "id": c.invocation_id,
                    "function_id": c.job.function_id,
                    "trigger": "job",
                    "job": c.job.id,
                    "attempt": c.attempt,
                    "status": InvocationStatus.RUNNING.value,
                    "worker_id": worker_id,
                    "started_at": now,
                }
                for c in claims
            ]
        ).execute()

    claims.sort(key=lambda c: (-c.job.priority, c.job.run_at, c.job.id))
    for c in claims:
        _log("claimed", c.job, "by %s", worker_id)
    return claims


def _pick_ready(now: datetime, slots: int) -> list[str]:
    """Ids of the best ready jobs that fit in ``slots`` and their key limits."""
    running = Job.alias("running")
    running_with_key = running.select(pw.fn.COUNT(running.id)).where(
        (running.concurrency_key == Job.concurrency_key) & (running.status == RUNNING)
    )
    candidates = (
        Job.select(
            Job.id,
            Job.concurrency_key,
            Job.concurrency_limit,
            running_with_key.alias("running_now"),
        )
        .where(
            (Job.status == PENDING)
            & (Job.run_at <= now)
            & (
                Job.concurrency_key.is_null()
                | (running_with_key < Job.concurrency_limit)
            )
        )
        .order_by(Job.priority.desc(), Job.run_at, Job.id)
        .limit(slots * CANDIDATES_PER_SLOT)
    )

    # Several candidates may share a key: count the ones taken here too.
    chosen, in_use = [], {}
    for job in candidates:
        key = job.concurrency_key
        if key is not None:
            taken = in_use.setdefault(key, job.running_now)
            if taken >= job.concurrency_limit:
                continue
            in_use[key] = taken + 1
        chosen.append(job.id)
        if len(chosen) == slots:
            break
    return chosen


def succeed(claim: Claim, outcome, version: int | None) -> bool:
    """The attempt returned: the job is ``SUCCEEDED`` with its result."""
    return _finish(
        claim,
        outcome,
        version,
        "succeeded",
        status=JobStatus.SUCCEEDED.value,
        result=json.dumps(outcome.result),
    )


def fail(
    claim: Claim,
    outcome,
    version: int | None,
    *,
    backoff_base_s: float,
    backoff_cap_s: float,
) -> bool:
    """The attempt failed: retry after a backoff, or bury the job if it was
    its last attempt."""
    job, now = claim.job, utcnow()
    if job.attempts < job.max_attempts:
        delay = retry_delay_s(job.attempts, backoff_base_s, backoff_cap_s)
        changes = {"status": PENDING, "run_at": now + timedelta(seconds=delay)}
        verb = "retrying"
    else:
        changes = {"status": JobStatus.DEAD.value, "finished_at": now}
        verb = "dead"
    changes.update(last_error=outcome.error, lease_expires_at=None)

    with models.write_transaction():
        if verb == "retrying" and _cancel_if_asked(claim.guard(), now):
            held, verb = 1, "cancelled"
        else:
            held = Job.update(**changes).where(claim.guard()).execute()
        if held:
            _record(claim, outcome, version)
    if held and verb == "retrying":
        _log(
            "failed",
            job,
            "%s; retrying at %s",
            outcome.error,
            iso_utc(changes["run_at"]),
            duration_ms=outcome.duration_ms,
            level=logging.WARNING,
        )
        return True
    return _settled(claim, held, verb, outcome)


def stop(claim: Claim, outcome, version: int | None) -> bool:
    """A running job whose cancellation was asked for is now ``CANCELLED``."""
    return _finish(
        claim, outcome, version, "cancelled", status=JobStatus.CANCELLED.value
    )


def _finish(claim: Claim, outcome, version: int | None, verb: str, **changes) -> bool:
    """End a held job with ``changes`` and record how its attempt ended."""
    with models.write_transaction():
        held = (
            Job.update(finished_at=utcnow(), lease_expires_at=None, **changes)
            .where(claim.guard())
            .execute()
        )
        if held:
            _record(claim, outcome, version)
    return _settled(claim, held, verb, outcome)


def release(claim: Claim, reason: str) -> bool:
    """Give a held job back as ``PENDING`` without spending its attempt.

    For a worker shutting down: the attempt it had to kill is recorded
    ``LOST``, and the job runs again as soon as another worker is free.
    """
    now, verb = utcnow(), "released"
    with models.write_transaction():
        if _cancel_if_asked(claim.guard(), now):
            held, verb = 1, "cancelled"
        else:
            held = (
                Job.update(
                    status=PENDING,
                    attempts=Job.attempts - 1,
                    run_at=now,
                    worker_id=None,
                    lease_expires_at=None,
                )
                .where(claim.guard())
                .execute()
            )
        if held:
            _mark_lost(claim.job.id, claim.attempt, reason, now)
    if held:
        _log(verb, claim.job, "%s", reason, level=logging.WARNING)
    return bool(held)


def reap(max_lost: int, batch: int = 100) -> int:
    """Return jobs whose lease expired to ``PENDING``: their worker is gone.

    A lost delivery does not spend an attempt, but a job lost more than
    ``max_lost`` times is buried, so that a job that kills its worker cannot
    loop forever; one whose cancellation was asked for ends ``CANCELLED``.
    Returns how many jobs were reaped.
    """
    now = utcnow()
    is_expired = (Job.status == RUNNING) & (Job.lease_expires_at < now)
    # A read first: a healthy queue is then checked without the write lock.
    if not Job.select(Job.id).where(is_expired).exists():
        return 0

    reaped = []
    with models.write_transaction():
        for job in Job.select().where(is_expired).limit(batch):
            lost = job.lost_count + 1
            error = f"lease expired: worker {job.worker_id} stopped answering"
            if job.cancel_requested:
                verb = "cancelled"
                changes = {"status": JobStatus.CANCELLED.value, "finished_at": now}
            elif lost > max_lost:
                verb = "dead"
                changes = {
                    "status": JobStatus.DEAD.value,
                    "finished_at": now,
                    "last_error": f"lost {lost} times, more than the {max_lost} "
                    f"allowed; the last time: {error}",
                }
            else:
                verb = "lost"
                changes = {
                    "status": PENDING,
                    "attempts": Job.attempts - 1,
                    "run_at": now,
                    "last_error": error,
                }
            changes.update(lost_count=lost, worker_id=None, lease_expires_at=None)

            # Only the claim read above: never one made since.
            same_claim = (
                (Job.id == job.id)
                & (Job.status == RUNNING)
                & (Job.claim_token == job.claim_token)
            )
            if Job.update(**changes).where(same_claim).execute():
                _mark_lost(job.id, job.attempts, error, now)
                reaped.append((job, verb))

    for job, verb in reaped:
        _log(
            verb,
            job,
            "lease expired (worker %s), lost %d time(s)%s",
            job.worker_id,
            job.lost_count + 1,
            "; returned to the queue" if verb == "lost" else "",
            level=logging.WARNING,
        )
    return len(reaped)


def requeue(job_id: str) -> Job:
    """A ``DEAD`` or ``CANCELLED`` job runs again, with a fresh attempt budget.

    Its earlier invocations stay in its history.
    """
    with models.write_transaction():
        job = get(job_id)
        if job.status not in (JobStatus.DEAD.value, JobStatus.CANCELLED.value):
            raise Conflict(
                f"job {job_id!r} is {job.status}; only DEAD or CANCELLED jobs "
                "can be requeued"
            )
        Job.update(
            status=PENDING,
            attempts=0,
            lost_count=0,
            run_at=utcnow(),
            started_at=None,
            finished_at=None,
            result=None,
            worker_id=None,
            lease_expires_at=None,
            cancel_requested=False,
        ).where((Job.id == job_id) & (Job.status == job.status)).execute()
        job = get(job_id)
    _log("requeued", job, "with a fresh budget of %d", job.max_attempts)
    return job


def cancel(job_id: str) -> Job:
    """Cancel a job: a ``PENDING`` one never runs; a ``RUNNING`` one is marked,
    and its worker stops the attempt and calls :func:`stop`."""
    with models.write_transaction():
        job = get(job_id)
        # Where reads take no write lock (PostgreSQL), a worker may claim or
        # settle the job between the read and the update: each update is
        # guarded by the status it expects, and a miss falls through.
        if job.status == PENDING and _change_if(
            job_id, PENDING, status=JobStatus.CANCELLED.value, finished_at=utcnow()
        ):
            verb = "cancelled"
        elif job.status in (PENDING, RUNNING) and _change_if(
            job_id, RUNNING, cancel_requested=True
        ):
            verb = "cancel requested"
        else:
            job = get(job_id)
            raise Conflict(f"job {job_id!r} is {job.status} and cannot be cancelled")
        job = get(job_id)
    _log(verb, job, "by request")
    return job


def _change_if(job_id: str, expected: str, **changes: Any) -> bool:
    """Apply ``changes`` if the job's status is still ``expected``; whether
    it was."""
    updated = (
        Job.update(**changes)
        .where((Job.id == job_id) & (Job.status == expected))
        .execute()
    )
    return bool(updated)


def cancel_requested(job_ids: list[str]) -> set[str]:
    """Which of these running jobs have been asked to cancel."""
    if not job_ids:
        return set()
    rows = Job.select(Job.id).where(
        Job.id.in_(job_ids) & (Job.status == RUNNING) & Job.cancel_requested
    )
    return {job.id for job in rows}


def purge(retention_days: float, batch: int = 500) -> int:
    """Delete finished jobs and their invocations older than the retention.

    Works in batches of ``batch`` rows so no transaction grows large; an
    idempotency key is honoured for exactly as long as its job is kept.
    """
    cutoff = utcnow() - timedelta(days=retention_days)
    finished = [s.value for s in models.TERMINAL]
    is_old = Job.status.in_(finished) & (Job.finished_at < cutoff)
    old_jobs = Job.select(Job.id).where(is_old)
    old_calls = Invocation.select(Invocation.id).where(
        Invocation.job.is_null() & (Invocation.started_at < cutoff)
    )

    deleted = calls = 0
    # The read outside the write transaction spares an idle queue the lock;
    # the delete checks each batch again inside it.
    while old_jobs.exists():
        with models.write_transaction():
            # Their invocations go with them (ON DELETE CASCADE).
            gone = old_jobs.limit(batch)
            deleted += Job.delete().where(Job.id.in_(gone)).execute()
    # Synchronous calls leave invocations of their own, kept just as long.
    while ids := [row.id for row in old_calls.limit(batch)]:
        calls += Invocation.delete().where(Invocation.id.in_(ids)).execute()

    if deleted or calls:
        logger.info(
            "purged %d finished job(s) and %d synchronous invocation(s) older than %s",
            deleted,
            calls,
            iso_utc(cutoff),
        )
    return deleted


def _cancel_if_asked(guard: pw.Expression, now: datetime) -> bool:
    """End a held job ``CANCELLED`` if its cancellation was asked for.

    Called where a job would otherwise go back to the queue: a cancel that
    was accepted must not be undone by a retry or a redelivery.
    """
    return bool(
        Job.update(
            status=JobStatus.CANCELLED.value, finished_at=now, lease_expires_at=None
        )
        .where(guard & Job.cancel_requested)
        .execute()
    )


def _record(claim: Claim, outcome, version: int | None) -> None:
    """Write how the attempt ended into its invocation."""
    Invocation.update(version=version, **Invocation.outcome_columns(outcome)).where(
        Invocation.id == claim.invocation_id
    ).execute()


def _mark_lost(job_id: str, attempt: int, error: str, now: datetime) -> None:
    Invocation.update(
        status=InvocationStatus.LOST.value, finished_at=now, error=error
    ).where(
        (Invocation.job == job_id)
        & (Invocation.attempt == attempt)
        & (Invocation.status == InvocationStatus.RUNNING.value)
    ).execute()


def _settled(claim: Claim, held: int, verb: str, outcome) -> bool:
    if not held:
        logger.warning(
            "job %s attempt %d finished (%s) after its claim was lost; "
            "the outcome is discarded",
            claim.job.id,
            claim.attempt,
            verb,
            extra={"action": "claim_lost", "job_id": claim.job.id},
        )
        return False
    if verb == "succeeded":
        _log(verb, claim.job, duration_ms=outcome.duration_ms)
    else:
        _log(
            verb,
            claim.job,
            "%s",
            outcome.error,
            duration_ms=outcome.duration_ms,
            level=logging.WARNING,
        )
    return True


def _log(
    verb: str,
    job: Job,
    detail: str = "",
    *args: Any,
    duration_ms: float | None = None,
    level: int = logging.INFO,
) -> None:
    """One line per state change: job id, function, attempt and duration."""
    duration = "" if duration_ms is None else f" in {duration_ms:.0f} ms"
    logger.log(
        level,
        "job %s %s (function %s, attempt %d/%d%s)" + (": " + detail if detail else ""),
        job.id,
        verb,
        job.function_id,
        job.attempts,
        job.max_attempts,
        duration,
        *args,
        extra={"action": verb.replace(" ", "_"), "job_id": job.id},
    )
